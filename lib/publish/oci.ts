// OCI distribution of qcow2 artifacts with the `oras` CLI (the tool the seeds and consumers use): push as an
// artifact with a qcow2 media type and title annotation, attach provenance as a referrer, read back, pull.
// Credentials go to oras on stdin (--password-stdin), never in argv.
import * as fs from "node:fs";
import * as path from "node:path";
import { HttpStatusError, statusOf, UserError } from "../errors";
import { run } from "../exec";
import { redact } from "../redact";
import { backoffMs, sleep } from "../backoff";

export const TITLE = "org.opencontainers.image.title";
export const IN_TOTO_MEDIA_TYPE = "application/vnd.in-toto+json";

export interface OciTarget {
    /** host[:port] */
    registry: string;
    repository: string;
    plainHttp?: boolean;
    username?: string;
    /** Token or password; handed to oras on stdin. */
    password?: string;
}

export interface Descriptor {
    mediaType: string;
    digest: string;
    size: number;
    artifactType?: string;
    annotations?: Record<string, string>;
}

export interface Manifest {
    schemaVersion: number;
    mediaType: string;
    artifactType?: string;
    config?: Descriptor;
    layers: Descriptor[];
    subject?: Descriptor;
    annotations?: Record<string, string>;
}

/** The oras binary: $ORAS, else the one tools/build.sh puts in .tools/bin, else PATH. */
export function orasBinary(env: NodeJS.ProcessEnv = process.env): string {
    if (env.ORAS) {
        if (!fs.existsSync(env.ORAS)) throw new UserError(`ORAS=${env.ORAS} does not exist: point ORAS at an oras binary or unset it`);
        return env.ORAS;
    }
    const local = path.resolve(__dirname, "..", "..", ".tools", "bin", "oras");
    if (fs.existsSync(local)) return local;
    const onPath = (env.PATH ?? "").split(path.delimiter).map((d) => path.join(d, "oras")).find((p) => fs.existsSync(p));
    if (onPath) return onPath;
    throw new UserError("oras not found: build it with `bash tools/build.sh oras` (into .tools/bin), install ORAS 1.3, or set ORAS=/path/to/oras");
}

export function reference(t: OciTarget, tagOrDigest: string): string {
    return `${t.registry}/${t.repository}${tagOrDigest.startsWith("sha256:") ? "@" : ":"}${tagOrDigest}`;
}

/**
 * Turns oras/registry failures into messages that say what to fix. oras reports the registry's answer only as text:
 * this is the one place that reads a status out of it (401, 403, 404); callers decide on `statusOf`.
 */
export function explainOrasError(err: unknown, t: OciTarget): HttpStatusError {
    const text = redact(err instanceof Error ? err.message : String(err), t.password ? [t.password] : []);
    const host = t.registry;
    // "basic credential not found": oras's words for a 401 with a Basic challenge and no credentials (not a 404).
    if (/\b401\b|unauthorized|authentication required|invalid username\/password|basic credential not found/i.test(text)) {
        return new HttpStatusError(`${host} refused the credentials (401 Unauthorized) for ${t.repository}: set factory:ghcrToken (or GHCR_TOKEN) ` +
            `and GHCR_USERNAME (or GITHUB_ACTOR); for GHCR the token needs write:packages to push and read:packages to pull.\n${text}`, 401);
    }
    if (/\b403\b|forbidden|denied|DENIED/i.test(text)) {
        return new HttpStatusError(`${host} denied access to ${t.repository} (403 Forbidden): the token lacks the scope (write:packages to push, ` +
            `read:packages to pull) or the package is not linked to the repository.\n${text}`, 403);
    }
    if (/connection refused|no such host|i\/o timeout|network is unreachable|dial tcp|server misbehaving|EOF/i.test(text)) {
        return new HttpStatusError(`registry ${host} is unreachable: check factory:oci.registry, that the registry is running and reachable` +
            `${t.plainHttp ? "" : ", and whether it needs plainHttp (loopback registries without TLS)"}.\n${text}`, undefined);
    }
    if (/http: server gave HTTP response to HTTPS client/i.test(text)) {
        return new HttpStatusError(`registry ${host} speaks plain HTTP: set factory:oci.plainHttp: true (only for loopback registries).\n${text}`, undefined);
    }
    if (/not found|MANIFEST_UNKNOWN|NAME_UNKNOWN|\b404\b/i.test(text)) return new HttpStatusError(text, 404);
    return new HttpStatusError(text, undefined);
}

async function oras(args: string[], t: OciTarget, opts: { cwd?: string } = {}): Promise<string> {
    const auth: string[] = [];
    let input: string | undefined;
    if (t.password) {
        auth.push("--username", t.username ?? "oauth2", "--password-stdin");
        input = t.password;
    }
    try {
        const { stdout } = await run(orasBinary(), [...args, ...auth, ...(t.plainHttp ? ["--plain-http"] : [])], { cwd: opts.cwd, input });
        return stdout;
    } catch (err) {
        throw explainOrasError(err, t);
    }
}

/** The manifest behind a tag or digest, or undefined when the registry has no such reference (404). */
export async function fetchManifest(t: OciTarget, tagOrDigest: string): Promise<{ manifest: Manifest; digest: string } | undefined> {
    try {
        const descriptor = JSON.parse(await oras(["manifest", "fetch", "--descriptor", reference(t, tagOrDigest)], t)) as Descriptor;
        const manifest = JSON.parse(await oras(["manifest", "fetch", reference(t, descriptor.digest)], t)) as Manifest;
        return { manifest, digest: descriptor.digest };
    } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw err;
    }
}

export interface PushRequest {
    target: OciTarget;
    /** First tag is the version; the rest are moving tags (latest, channels). */
    tags: string[];
    file: string;
    mediaType: string;
    artifactType: string;
    annotations: Record<string, string>;
    /** Where retry lines go (the build log / the engine); default stderr. */
    log?: (line: string) => void;
    /** Backoff base between tries (tests use a few ms). */
    retryDelayMs?: number;
}

/** A failure worth another try: the connection dropped or timed out, or the registry answered 5xx/429. */
export function transientOrasError(message: string): boolean {
    return /EOF|connection reset|broken pipe|i\/o timeout|timeout awaiting|TLS handshake timeout|(500|502|503|504|429)|Service Unavailable|Bad Gateway|Too Many Requests/i.test(message) &&
        !/(401|403|404)|unauthorized|denied|not found/i.test(message);
}

const PUSH_ATTEMPTS = 3;

export interface PushResult {
    manifestDigest: string;
    layerDigest: string;
    size: number;
    /** False when the registry already held this exact artifact under every tag: nothing was uploaded. */
    uploaded: boolean;
}

function layerOf(m: Manifest, mediaType: string): Descriptor | undefined {
    return m.layers.find((l) => l.mediaType === mediaType);
}

/**
 * `oras push` of files in `dir` (each `name:mediaType`) under every tag, returning oras's JSON. A cut connection or a
 * 5xx mid-upload is tried again, a bounded number of times, each logged; blobs the registry already holds are not
 * sent again (oras asks with HEAD before it uploads a blob).
 */
export async function orasPush(t: OciTarget, tags: string[], dir: string, files: string[], extra: string[], log?: (line: string) => void, retryDelayMs?: number): Promise<string> {
    for (let attempt = 1; ; attempt++) {
        try {
            return await oras(["push", "--no-tty", "--format", "json", ...extra, `${t.registry}/${t.repository}:${tags.join(",")}`, ...files], t, { cwd: dir });
        } catch (err) {
            const message = (err as Error).message;
            if (attempt >= PUSH_ATTEMPTS || !transientOrasError(message)) throw err;
            const wait = backoffMs(retryDelayMs ?? 2000, attempt);
            (log ?? ((l: string) => process.stderr.write(`${l}\n`)))(
                `pushing ${files.map((f) => f.replace(/:[^:]*$/, "")).join(", ")} to ${t.registry}/${t.repository}: ${message.split("\n").find((l) => transientOrasError(l))?.trim() ?? "failed"}; retry ${attempt}/${PUSH_ATTEMPTS - 1} in ${wait} ms`);
            await sleep(wait);
        }
    }
}

/** One blob of a repository, by digest, into `file` (oras checks the bytes against the digest). */
export async function fetchBlob(t: OciTarget, digest: string, file: string): Promise<void> {
    await oras(["blob", "fetch", "--no-tty", "--output", file, reference(t, digest)], t);
}

/**
 * Pushes a file as a single-layer OCI artifact under every tag. Skips the upload entirely when each tag already
 * names a manifest with this layer digest and artifact type; fails when what the registry reports differs from
 * the expected sha256.
 */
export async function pushArtifact(req: PushRequest, expectedSha256: string): Promise<PushResult> {
    const t = req.target;
    const want = `sha256:${expectedSha256}`;
    const existing = await Promise.all(req.tags.map((tag) => fetchManifest(t, tag)));
    const same = existing.every((e) => e && e.manifest.artifactType === req.artifactType && layerOf(e.manifest, req.mediaType)?.digest === want);
    if (same && existing[0] && existing.every((e) => e?.digest === existing[0]?.digest)) {
        const layer = layerOf(existing[0].manifest, req.mediaType) as Descriptor;
        return { manifestDigest: existing[0].digest, layerDigest: layer.digest, size: layer.size, uploaded: false };
    }
    const dir = path.dirname(req.file);
    const name = path.basename(req.file);
    const annotationFile = path.join(fs.mkdtempSync(path.join(dir, ".oras-")), "annotations.json");
    try {
        // Manifest annotations, plus the title on the layer itself (oras adds it from the file name too).
        fs.writeFileSync(annotationFile, JSON.stringify({ $manifest: req.annotations, [name]: { [TITLE]: name } }));
        const out = await orasPush(t, req.tags, dir, [`${name}:${req.mediaType}`], ["--artifact-type", req.artifactType, "--annotation-file", annotationFile],
            req.log, req.retryDelayMs);
        const pushed = JSON.parse(out) as { digest: string };
        const got = await fetchManifest(t, pushed.digest);
        const layer = got && layerOf(got.manifest, req.mediaType);
        if (!layer) throw new Error(`the registry has no ${req.mediaType} layer in the manifest it just accepted (${pushed.digest})`);
        if (layer.digest !== want) {
            throw new Error(`the registry holds layer ${layer.digest} for ${name}, but its local sha256 is ${expectedSha256}: ` +
                "the upload was corrupted or the file changed during the push; nothing is recorded, run pulumi up again");
        }
        return { manifestDigest: pushed.digest, layerDigest: layer.digest, size: layer.size, uploaded: true };
    } finally {
        fs.rmSync(path.dirname(annotationFile), { recursive: true, force: true });
    }
}

/** Attaches a file as a referrer of `subject` (e.g. provenance) and returns the referrer's manifest digest. */
export async function attach(t: OciTarget, subjectDigest: string, file: string, artifactType: string, mediaType: string): Promise<string> {
    const out = await oras(["attach", "--no-tty", "--format", "json", "--artifact-type", artifactType,
        reference(t, subjectDigest), `${path.basename(file)}:${mediaType}`], t, { cwd: path.dirname(file) });
    return (JSON.parse(out) as { digest: string }).digest;
}

/** Referrers of a manifest (what `oras discover` lists). */
export async function referrers(t: OciTarget, subjectDigest: string): Promise<Descriptor[]> {
    const out = await oras(["discover", "--format", "json", reference(t, subjectDigest)], t);
    const json = JSON.parse(out) as { referrers?: Descriptor[]; manifests?: Descriptor[] };
    return json.referrers ?? json.manifests ?? [];
}

export async function deleteTag(t: OciTarget, tag: string): Promise<void> {
    await oras(["manifest", "delete", "--force", reference(t, tag)], t);
}

/** Pulls an artifact into dir; returns the files oras wrote. */
export async function pull(t: OciTarget, tagOrDigest: string, dir: string): Promise<string[]> {
    fs.mkdirSync(dir, { recursive: true });
    const out = await oras(["pull", "--no-tty", "--format", "json", "-o", dir, reference(t, tagOrDigest)], t);
    const json = JSON.parse(out) as { files?: Array<{ path: string }> };
    return (json.files ?? []).map((f) => f.path);
}

/** oci://host[:port]/repo/path:tag (or @sha256:...) -> target + reference. */
export function parseOciRef(ref: string): { registry: string; repository: string; reference: string } {
    const m = /^oci:\/\/([^/]+)\/(.+?)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(sha256:[0-9a-f]{64}))$/.exec(ref);
    if (!m) throw new Error(`not an oci:// reference: ${ref} (expected oci://<registry>/<repository>:<tag> or @sha256:<digest>)`);
    return { registry: m[1], repository: m[2], reference: m[3] ?? m[4] };
}
