// The shared build cache (issue 37): a build that passed its gate, kept in the OCI registry the labs already use and
// addressed by its build key, so another builder (a CI matrix job, the lab's `pulumi up`, a laptop's local stack)
// pulls it instead of building it again. BuildKit's registry cache, Nix's binary caches and Bazel's remote cache
// work the same way: the key names every input, so the same key means the same build.
//
// Layout: one repository, <factory:buildCache.repository>/build-cache, and one tag per image and key,
// `<image>-<build key>`. A tag and not a referrer: the lookup happens before the build, when there is no digest of
// the artifact to be a referrer's subject, and the key is the only name known then. A tag can be moved by anyone
// who may push, so nothing trusts it: every entry carries a signed statement (in-toto Statement v1) naming the image,
// the key, the version, every file's sha256 and size and the gate's result, and a puller verifies the signature
// against factory:buildCache.trustedKeys, then the statement against the manifest, then every byte it pulled
// against the statement, before the build is used.
//
// An entry (each file a layer, titled with its name, as `oras pull` writes them):
//   <image>.<qcow2|img.xz|iso>   the artifact
//   build.json, pkg-manifest.txt, build.log
//   evidence-build.tar           the build's evidence packet (build/…), as written on the builder
//   evidence-validate.tar        the gate's evidence packet (validate/…): the offline report, and the boot report
//                                and console when the boot gate ran, so the puller's gate needs no second boot
//   statement.json, statement.json.asc
//
// The signature is a detached OpenPGP signature by the lab's evidence key (EVIDENCE_GPG_KEY, already kept to sign
// evidence packets), checked by gpg in a keyring that holds the trusted public keys only. cosign or notation would
// let registry-side tooling verify entries too, but the only consumers of this cache are the factory's own builders,
// which already trust that key for evidence; a second key type would be a second secret to keep and rotate, and
// cosign's module graph (Sigstore, cloud KMS clients) would be the largest tool a cold CI builds. The statement is
// in-toto's, so moving to a DSSE/cosign signature later changes the envelope, not what is signed.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import execa from "execa";
import { ConfigError, type FactoryConfig } from "./config";
import { run } from "./exec";
import { hashFile } from "./sha256";
import { evidenceRunDir, signFile, verifyPacket, type SigningOptions } from "./evidence/packet";
import { bootReportFile } from "./validation/bootCheck";
import { STATEMENT_TYPE } from "./evidence/provenance";
import { fetchBlob, fetchManifest, orasPush, pull, reference, TITLE, type Manifest, type OciTarget } from "./publish/oci";
import { linkOrCopy, writeFileAtomic } from "./atomic";
import type { ArtifactFormat } from "./recipe";
// Types only: the build store is lib/stages's (adoptBuild), and the caller hands its adopt in.
import type { AdoptedBuild, BuildResult } from "./stages/pipeline";

export const STATEMENT = "statement.json";
export const STATEMENT_SIGNATURE = "statement.json.asc";
export const EVIDENCE_BUILD = "evidence-build.tar";
export const EVIDENCE_VALIDATE = "evidence-validate.tar";
export const ENTRY_PREDICATE = "urn:image-factory:build-cache:v1";
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export interface BuildCacheSettings {
    /** registry, <repository>/build-cache, and the credentials (the password goes to oras on stdin). */
    target: OciTarget;
    /** Armored OpenPGP public keys whose signatures a puller accepts. */
    trustedKeys: string[];
    /** For media types: application/vnd.<vendor>.… */
    vendor: string;
}

/** The cache as a stack configures it, in the plain form providers take (the password is a secret input there). */
export interface BuildCacheInput {
    registry: string;
    /** <factory:buildCache.repository>/build-cache */
    repository: string;
    plainHttp: boolean;
    username?: string;
    password?: string;
    trustedKeys: string[];
    vendor: string;
    pull: boolean;
    push: boolean;
    /** The stack's validation scratch (<workDir>/validate): a pulled boot report goes where the gate looks for it. */
    scratchDir: string;
    /** The stack's evidence root: a pulled build's evidence packet goes there. */
    evidenceRoot: string;
}

/** factory:buildCache.trustedKeys read from their files (relative to the project), each checked to be an armored public key. */
export function readTrustedKeys(files: string[], resolve: (p: string) => string): string[] {
    return files.map((f, i) => {
        const file = resolve(f);
        const key = `factory:buildCache.trustedKeys[${i}]`;
        if (!fs.existsSync(file)) throw new ConfigError([`${key} = ${JSON.stringify(f)}: no such file (export the lab's evidence key with gpg --armor --export <key id> > ${f})`]);
        const text = fs.readFileSync(file, "utf8");
        if (!text.includes("-----BEGIN PGP PUBLIC KEY BLOCK-----")) throw new ConfigError([`${key} = ${JSON.stringify(f)}: is not an armored OpenPGP public key (gpg --armor --export <key id>)`]);
        return text;
    });
}

/** The cache's settings from a stack's config outside the engine (make build.cache): the password from GHCR_TOKEN. */
export function buildCacheInputOf(config: FactoryConfig, resolve: (p: string) => string, dirs: { scratchDir: string; evidenceRoot: string },
    env: NodeJS.ProcessEnv = process.env): BuildCacheInput | undefined {
    const c = config.buildCache;
    if (!c) return undefined;
    return {
        registry: c.registry, repository: `${c.repository}/build-cache`, plainHttp: c.plainHttp,
        username: c.username ?? config.oci?.username ?? env.GHCR_USERNAME ?? env.GITHUB_ACTOR,
        ...(env.GHCR_TOKEN ? { password: env.GHCR_TOKEN } : {}),
        trustedKeys: readTrustedKeys(c.trustedKeys, resolve), vendor: config.vendor, pull: c.pull, push: c.push, ...dirs,
    };
}

export function buildCacheSettings(c: BuildCacheInput): BuildCacheSettings {
    return {
        target: { registry: c.registry, repository: c.repository, plainHttp: c.plainHttp, username: c.username, password: c.password },
        trustedKeys: c.trustedKeys, vendor: c.vendor,
    };
}

export function entryArtifactType(vendor: string): string {
    return `application/vnd.${vendor}.image-factory.build-cache.v1+json`;
}

/** The entry's tag: `<image>-<build key>`. */
export function entryTag(name: string, buildKey: string): string {
    const tag = `${name}-${buildKey}`;
    if (!TAG.test(tag)) throw new Error(`build cache: ${tag} is not a valid OCI tag (an image name and build key of at most 128 characters)`);
    return tag;
}

export function entryRef(s: BuildCacheSettings, name: string, buildKey: string): string {
    return reference(s.target, entryTag(name, buildKey));
}

export interface EntryGate {
    passed: boolean;
    /** "offline", and "boot" when the boot gate ran. */
    checksRan: string[];
    checks: Array<{ id: string; status: string }>;
    /** The boot's report key (lib/validation/bootCheck.ts bootReportKey) and what it found. */
    boot?: { reportKey: string; passed: boolean; accelerator: string; totalSeconds: number };
}

/** What a push takes: a finished build, and the gate it passed. */
export interface EntrySource {
    name: string;
    buildKey: string;
    version: string;
    format: string;
    sha256: string;
    size: number;
    virtualSize: number;
    durationSeconds: number;
    artifact: string;
    buildJson: string;
    pkgManifest: string;
    buildLog: string;
    /** Evidence packet directories (…/build, …/validate). */
    buildEvidence?: string;
    validationEvidence?: string;
    gate: EntryGate;
}

/** The entry of a finished build (lib/stages/pipeline.ts BuildResult), its evidence packets and the gate it passed. */
export function entrySourceOf(r: BuildResult, gate: EntryGate, evidence: { build?: string; validation?: string } = {}): EntrySource {
    return {
        name: r.name, buildKey: r.buildKey, version: r.version, format: r.format, sha256: r.sha256, size: r.size, virtualSize: r.virtualSize,
        durationSeconds: r.durationSeconds, artifact: r.path, buildJson: r.buildJsonPath, pkgManifest: r.pkgManifestPath, buildLog: r.logPath,
        buildEvidence: evidence.build, validationEvidence: evidence.validation, gate,
    };
}

export interface EntryStatement {
    _type: string;
    subject: Array<{ name: string; digest: { sha256: string } }>;
    predicateType: string;
    predicate: {
        image: string;
        buildKey: string;
        version: string;
        format: string;
        artifact: string;
        virtualSize: number;
        durationSeconds: number;
        gate: EntryGate;
        /** Every file but the statement and its signature: size and media type. */
        files: Record<string, { size: number; mediaType: string }>;
    };
}

function mediaTypeOf(vendor: string, file: string, format: string, artifact: string): string {
    if (file === artifact) return `application/vnd.${vendor}.${format === "img.xz" ? "img+xz" : format}`;
    if (file.endsWith(".json")) return "application/json";
    if (file.endsWith(".tar")) return "application/x-tar";
    return "text/plain";
}

/** A packet directory as a tar that is the same bytes for the same files (names sorted, owners and times cleared). */
async function tarPacket(dir: string, out: string): Promise<void> {
    await run("tar", ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf", out, "-C", path.dirname(dir), path.basename(dir)]);
}

export type Verdict = { ok: true; fingerprint: string } | { ok: false; reason: string };

/**
 * A gpg home holding the trusted keys only, for one verification; removed by the caller. gpg (not gpgv) so that the
 * evidence packets' own signatures verify in the same keyring.
 */
export async function trustedKeyring(keys: string[]): Promise<string> {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "if-trust-"));
    fs.chmodSync(home, 0o700);
    for (const [i, key] of keys.entries()) {
        const file = path.join(home, `key-${i}.asc`);
        fs.writeFileSync(file, key);
        await run("gpg", ["--homedir", home, "--batch", "--quiet", "--import", file], { hint: `factory:buildCache.trustedKeys[${i}] is not an OpenPGP public key (gpg --armor --export <key id>)` });
    }
    return home;
}

/** Is `signature` a good signature of `file` by one of the keys in `home`? The reason names what is wrong. */
export async function verifySignature(home: string, file: string, signature: string): Promise<Verdict> {
    const r = await execa("gpg", ["--homedir", home, "--batch", "--status-fd", "1", "--verify", signature, file], { reject: false });
    const status = r.stdout;
    const valid = /^\[GNUPG:\] VALIDSIG (\S+)(?: \S+)* (\S+)$/m.exec(status);
    if (r.exitCode === 0 && valid) return { ok: true, fingerprint: valid[2] };
    const noKey = /^\[GNUPG:\] (?:NO_PUBKEY|ERRSIG) ([0-9A-F]+)/m.exec(status);
    if (noKey) return { ok: false, reason: `it is signed by key ${noKey[1]}, which is not one of factory:buildCache.trustedKeys` };
    if (/^\[GNUPG:\] BADSIG/m.test(status)) return { ok: false, reason: "its signature does not match the statement (the statement was changed after it was signed)" };
    if (/^\[GNUPG:\] (EXPKEYSIG|REVKEYSIG)/m.test(status)) return { ok: false, reason: "it is signed by a trusted key that has expired or been revoked" };
    return { ok: false, reason: `its signature does not verify (${(r.stderr.trim().split("\n").pop() ?? "").trim() || `gpg exit ${r.exitCode}`})` };
}

/** The layer titled `name` in a manifest. */
function layerTitled(m: Manifest, name: string) {
    return m.layers.find((l) => l.annotations?.[TITLE] === name);
}

export interface PushOutcome {
    ref: string;
    manifestDigest: string;
    /** False when the registry already held a good entry for this key: nothing was sent. */
    uploaded: boolean;
}

/**
 * Pushes a gated build as the entry of its key. An entry of this key that already verifies (a trusted signature, the
 * same image and key, a passed gate) is kept as it is and nothing is sent: the first good build of a key wins, and a
 * re-push costs one manifest and two small blob reads. One that does not verify is replaced.
 */
export async function pushEntry(s: BuildCacheSettings, src: EntrySource, sign: SigningOptions, log: (line: string) => void): Promise<PushOutcome> {
    const tag = entryTag(src.name, src.buildKey);
    const ref = reference(s.target, tag);
    const existing = await fetchManifest(s.target, tag);
    if (existing) {
        const v = await checkEntryHead(s, existing, src.name, src.buildKey);
        if (v.ok) {
            log(`→ ${src.name}: the build cache already holds ${ref} (${existing.digest}, signed by ${v.fingerprint}): nothing sent`);
            return { ref, manifestDigest: existing.digest, uploaded: false };
        }
        log(`→ ${src.name}: the build cache's ${ref} is refused (${v.reason}): replacing it with this build`);
    }
    const stage = fs.mkdtempSync(path.join(path.dirname(src.artifact), ".cache-push-"));
    try {
        const artifact = path.basename(src.artifact);
        const files: Array<{ name: string; sha256?: string }> = [
            { name: artifact, sha256: src.sha256 }, // hashed once, when it was built; the registry's digest is checked below
            { name: "build.json" }, { name: "pkg-manifest.txt" }, { name: "build.log" },
        ];
        // Linked in under the names oras titles the layers with.
        linkOrCopy(src.artifact, path.join(stage, artifact));
        linkOrCopy(src.buildJson, path.join(stage, "build.json"));
        linkOrCopy(src.pkgManifest, path.join(stage, "pkg-manifest.txt"));
        linkOrCopy(src.buildLog, path.join(stage, "build.log"));
        if (src.buildEvidence) {
            await tarPacket(src.buildEvidence, path.join(stage, EVIDENCE_BUILD));
            files.push({ name: EVIDENCE_BUILD });
        }
        if (src.validationEvidence) {
            await tarPacket(src.validationEvidence, path.join(stage, EVIDENCE_VALIDATE));
            files.push({ name: EVIDENCE_VALIDATE });
        }
        const subject: EntryStatement["subject"] = [];
        const described: EntryStatement["predicate"]["files"] = {};
        for (const f of files) {
            const p = path.join(stage, f.name);
            const size = fs.statSync(p).size;
            subject.push({ name: f.name, digest: { sha256: f.sha256 ?? (await hashFile(p)).sha256 } });
            described[f.name] = { size, mediaType: mediaTypeOf(s.vendor, f.name, src.format, artifact) };
        }
        const statement: EntryStatement = {
            _type: STATEMENT_TYPE, subject, predicateType: ENTRY_PREDICATE,
            predicate: {
                image: src.name, buildKey: src.buildKey, version: src.version, format: src.format, artifact,
                virtualSize: src.virtualSize, durationSeconds: src.durationSeconds, gate: src.gate, files: described,
            },
        };
        fs.writeFileSync(path.join(stage, STATEMENT), `${JSON.stringify(statement, null, 2)}\n`);
        await signFile(path.join(stage, STATEMENT), path.join(stage, STATEMENT_SIGNATURE), sign, "the build-cache entry");
        const annotations = path.join(stage, ".annotations.json");
        fs.writeFileSync(annotations, JSON.stringify({ $manifest: {
            "org.opencontainers.image.title": `${src.name} ${src.version}`,
            "org.opencontainers.image.version": src.version,
            [`${ENTRY_PREDICATE}:build-key`]: src.buildKey,
        } }));
        const args = [...files.map((f) => `${f.name}:${described[f.name].mediaType}`), `${STATEMENT}:application/vnd.in-toto+json`, `${STATEMENT_SIGNATURE}:application/pgp-signature`];
        log(`→ ${src.name}: pushing ${src.version} to the build cache as ${ref}…`);
        const out = await orasPush(s.target, [tag], stage, args, ["--artifact-type", entryArtifactType(s.vendor), "--annotation-file", annotations], log);
        const digest = (JSON.parse(out) as { digest: string }).digest;
        const got = await fetchManifest(s.target, digest);
        for (const sub of subject) {
            const layer = got && layerTitled(got.manifest, sub.name);
            if (layer?.digest !== `sha256:${sub.digest.sha256}`) {
                throw new Error(`build cache: the registry holds ${layer?.digest ?? "no layer"} for ${sub.name} of ${ref}, but its sha256 here is ${sub.digest.sha256}: ` +
                    "the file changed during the push or the upload was corrupted; run again");
            }
        }
        log(`→ ${src.name}: pushed ${ref} (${digest})`);
        return { ref, manifestDigest: digest, uploaded: true };
    } finally {
        fs.rmSync(stage, { recursive: true, force: true });
    }
}

/**
 * The cheap half of a verification, on the manifest and two small blobs: the statement's signature by a trusted key,
 * and a statement for this image and key, gated, whose every file is a layer of this manifest with that digest.
 */
async function checkEntryHead(s: BuildCacheSettings, entry: { manifest: Manifest; digest: string }, name: string, buildKey: string,
    keep?: { dir: string; home: string }): Promise<Verdict & { statement?: EntryStatement }> {
    const m = entry.manifest;
    const statementLayer = layerTitled(m, STATEMENT);
    const signatureLayer = layerTitled(m, STATEMENT_SIGNATURE);
    if (!statementLayer || !signatureLayer) return { ok: false, reason: `it has no signed statement (${STATEMENT} and ${STATEMENT_SIGNATURE})` };
    if (s.trustedKeys.length === 0) return { ok: false, reason: "factory:buildCache.trustedKeys is empty, so no signer is trusted" };
    const dir = keep?.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "if-entry-"));
    const home = keep?.home ?? (await trustedKeyring(s.trustedKeys));
    try {
        await fetchBlob(s.target, statementLayer.digest, path.join(dir, STATEMENT));
        await fetchBlob(s.target, signatureLayer.digest, path.join(dir, STATEMENT_SIGNATURE));
        const sig = await verifySignature(home, path.join(dir, STATEMENT), path.join(dir, STATEMENT_SIGNATURE));
        if (!sig.ok) return sig;
        let st: EntryStatement;
        try {
            st = JSON.parse(fs.readFileSync(path.join(dir, STATEMENT), "utf8")) as EntryStatement;
        } catch (e) {
            return { ok: false, reason: `its statement is not JSON (${(e as Error).message})` };
        }
        const p = st.predicate;
        if (st._type !== STATEMENT_TYPE || st.predicateType !== ENTRY_PREDICATE || !p) return { ok: false, reason: `its statement is not a ${ENTRY_PREDICATE} statement` };
        if (p.image !== name || p.buildKey !== buildKey) {
            return { ok: false, reason: `its signed statement is for ${p.image} with build key ${p.buildKey}, not ${name} with ${buildKey} (an entry moved to another key's tag)` };
        }
        if (!p.gate?.passed) return { ok: false, reason: "its signed statement says the build did not pass its gate" };
        const names = new Set(st.subject.map((x) => x.name));
        for (const sub of st.subject) {
            const layer = layerTitled(m, sub.name);
            if (!layer) return { ok: false, reason: `${sub.name}, named by the statement, is not in the entry` };
            if (layer.digest !== `sha256:${sub.digest.sha256}`) {
                return { ok: false, reason: `${sub.name} in the entry is ${layer.digest}, but the signed statement records sha256:${sub.digest.sha256} (changed after signing)` };
            }
            if (layer.size !== p.files[sub.name]?.size) return { ok: false, reason: `${sub.name} in the entry is ${layer.size} bytes, the signed statement says ${p.files[sub.name]?.size}` };
        }
        const unsigned = m.layers.map((l) => l.annotations?.[TITLE] ?? l.digest).find((t) => t !== STATEMENT && t !== STATEMENT_SIGNATURE && !names.has(t));
        if (unsigned) return { ok: false, reason: `${unsigned} in the entry is not named by the signed statement` };
        if (!names.has(p.artifact)) return { ok: false, reason: `the statement names no artifact file (${p.artifact})` };
        return { ...sig, statement: st };
    } finally {
        if (!keep) {
            fs.rmSync(dir, { recursive: true, force: true });
            fs.rmSync(home, { recursive: true, force: true });
        }
    }
}

/** What a lookup found: nothing, an entry it refused (and why), or a verified entry's files in `dir`. */
export type PullOutcome =
    | { state: "absent"; ref: string }
    | { state: "refused"; ref: string; reason: string }
    | { state: "pulled"; ref: string; manifestDigest: string; statement: EntryStatement; signer: string; dir: string; bytes: number };

/**
 * Looks the key up and, when an entry is there, verifies and pulls it into `dir` (which must not exist; the caller
 * moves the files where they belong and removes it): the signature, the statement against the manifest, and then
 * every pulled file's sha256 and size against the statement. A build pinned to another version is refused too.
 */
export async function pullEntry(s: BuildCacheSettings, name: string, buildKey: string, dir: string, opts: { versionOverride?: string; log?: (line: string) => void } = {}): Promise<PullOutcome> {
    const tag = entryTag(name, buildKey);
    const ref = reference(s.target, tag);
    const refuse = (reason: string): PullOutcome => {
        fs.rmSync(dir, { recursive: true, force: true });
        return { state: "refused", ref, reason };
    };
    // A cache that cannot be asked (unreachable, credentials refused) costs a local build, not the run.
    const found = await fetchManifest(s.target, tag).catch((e: Error) => e);
    if (found instanceof Error) return { state: "refused", ref, reason: `the build cache could not be read: ${reasonOf(found)}` };
    if (!found) return { state: "absent", ref };
    if (found.manifest.artifactType !== entryArtifactType(s.vendor)) return refuse(`it is a ${found.manifest.artifactType ?? "plain image"} manifest, not a build-cache entry`);
    fs.mkdirSync(dir, { recursive: true });
    const head = path.join(dir, ".head");
    fs.mkdirSync(head);
    const home = await trustedKeyring(s.trustedKeys).catch((e: Error) => e);
    if (home instanceof Error) return refuse(home.message);
    try {
        const v = await checkEntryHead(s, found, name, buildKey, { dir: head, home });
        if (!v.ok) return refuse(v.reason);
        const st = v.statement as EntryStatement;
        if (opts.versionOverride && st.predicate.version !== opts.versionOverride) {
            return refuse(`it holds version ${st.predicate.version}, and this stack pins factory:version ${opts.versionOverride}`);
        }
        opts.log?.(`→ ${name}: pulling ${ref} (${st.predicate.version}, signed by ${v.fingerprint})…`);
        const files = path.join(dir, "files");
        // By digest: the tag may move while we pull; the manifest we checked is the one we take.
        try {
            await pull(s.target, found.digest, files);
        } catch (e) {
            // oras checks each blob's size and digest as it writes it: a cut or changed transfer ends here.
            return refuse(`the pull did not arrive whole (${reasonOf(e)})`);
        }
        let bytes = 0;
        for (const sub of st.subject) {
            const p = path.join(files, sub.name);
            if (!fs.existsSync(p)) return refuse(`${sub.name} did not arrive in the pull`);
            const d = await hashFile(p);
            bytes += d.size;
            if (d.sha256 !== sub.digest.sha256 || d.size !== st.predicate.files[sub.name].size) {
                return refuse(`${sub.name} arrived as sha256 ${d.sha256} (${d.size} bytes), but the signed statement records ${sub.digest.sha256} (${st.predicate.files[sub.name].size} bytes): a changed or truncated pull`);
            }
        }
        // The evidence holds what the statement says: the build's packet names this key, the gate's packet passed.
        for (const [tar, packet] of [[EVIDENCE_BUILD, "build"], [EVIDENCE_VALIDATE, "validate"]] as const) {
            if (!fs.existsSync(path.join(files, tar))) continue;
            await run("tar", ["-xf", path.join(files, tar), "-C", files, "--no-same-owner"]);
            const checked = await verifyPacket(path.join(files, packet), { gnupgHome: home });
            if (!checked.ok) return refuse(`its ${packet} evidence does not verify: ${checked.failure?.file}: ${checked.failure?.reason}`);
        }
        const key = readJson<{ buildKey?: string }>(path.join(files, "build", "build.json")) ?? readJson<{ buildKey?: string }>(path.join(files, "build.json"));
        if (key?.buildKey !== buildKey) return refuse(`its build evidence names build key ${key?.buildKey}, not ${buildKey}`);
        const report = readJson<{ passed?: boolean }>(path.join(files, "validate", "report.json"));
        if (fs.existsSync(path.join(files, EVIDENCE_VALIDATE)) && report?.passed !== true) return refuse("its validation evidence does not say the gate passed");
        return { state: "pulled", ref, manifestDigest: found.digest, statement: st, signer: v.fingerprint, dir: files, bytes };
    } catch (e) {
        return refuse(reasonOf(e));
    } finally {
        fs.rmSync(home, { recursive: true, force: true });
        fs.rmSync(head, { recursive: true, force: true });
    }
}

/**
 * The build of this key from the shared build cache, verified (pullEntry), made this machine's build of the key
 * (adoptBuild), with its gate's boot report where this stack's gate looks for it (so it boots only what nobody booted)
 * and its build evidence in this stack's evidence root. A refusal is said (report, and warn for the engine's
 * summary) and undefined returned: the caller builds instead.
 */
export async function restoreFromBuildCache(c: BuildCacheInput, want: { name: string; buildKey: string; buildsDir: string; versionOverride?: string; takenVersions?: string[] },
    adopt: (build: AdoptedBuild, files: string) => Promise<BuildResult>,
    report: (line: string) => void, warn: (line: string) => void = () => undefined): Promise<{ result: BuildResult; evidencePath?: string; ref: string } | undefined> {
    const { name, buildKey } = want;
    const stage = path.join(want.buildsDir, name, `.pull-${buildKey.slice(0, 16)}.partial`);
    fs.rmSync(stage, { recursive: true, force: true });
    const t0 = Date.now();
    const refused = (ref: string, reason: string) => {
        const line = `${name}: the build cache's entry ${ref} is refused: ${reason}. Building it here instead`;
        report(`→ ${line}`);
        warn(line);
        return undefined;
    };
    try {
        const got = await pullEntry(buildCacheSettings(c), name, buildKey, stage, { versionOverride: want.versionOverride, log: report });
        if (got.state === "absent") {
            report(`→ ${name}: build key ${buildKey.slice(0, 16)} is not in the build cache (${got.ref}): building it here`);
            return undefined;
        }
        if (got.state === "refused") return refused(got.ref, got.reason);
        const p = got.statement.predicate;
        if (want.takenVersions?.includes(p.version)) return refused(got.ref, `it is version ${p.version}, which this stack's store already gave another build (versions are never reused)`);
        const sha256 = got.statement.subject.find((x) => x.name === p.artifact)?.digest.sha256 as string; // checked by pullEntry
        const result = await adopt({
            name, buildKey, version: p.version, format: p.format as ArtifactFormat, artifact: p.artifact, sha256,
            size: p.files[p.artifact].size, virtualSize: p.virtualSize, durationSeconds: p.durationSeconds,
        }, got.dir);
        const bootReport = path.join(got.dir, "validate", "boot-report.json");
        if (p.gate.boot?.passed && fs.existsSync(bootReport)) {
            const file = bootReportFile(c.scratchDir, name, p.gate.boot.reportKey);
            const consoleLog = file.replace(/\.json$/, "-console.log");
            fs.mkdirSync(path.dirname(file), { recursive: true });
            fs.copyFileSync(path.join(got.dir, "validate", "console.log"), consoleLog);
            const r = JSON.parse(fs.readFileSync(bootReport, "utf8")) as Record<string, unknown>;
            await writeFileAtomic(file, `${JSON.stringify({ ...r, consoleLog, fromBuildCache: got.ref }, null, 2)}\n`);
        }
        let evidencePath: string | undefined;
        if (fs.existsSync(path.join(got.dir, "build"))) {
            const runDir = evidenceRunDir(c.evidenceRoot, name, result.version, new Date(String(result.buildInfo.buildTime)));
            evidencePath = path.join(runDir, "build");
            if (!fs.existsSync(evidencePath)) {
                fs.mkdirSync(runDir, { recursive: true });
                fs.renameSync(path.join(got.dir, "build"), evidencePath);
            }
        }
        report(`→ ${name}: build ${buildKey.slice(0, 12)} pulled from the build cache ${got.ref} (${result.version}, ${got.bytes} bytes in ` +
            `${((Date.now() - t0) / 1000).toFixed(1)} s, signed by ${got.signer}), verified: not building it`);
        return { result, evidencePath, ref: got.ref };
    } finally {
        fs.rmSync(stage, { recursive: true, force: true });
    }
}

/** The line of a tool's failure that says why (oras prints the command first, its reason after). */
function reasonOf(e: unknown): string {
    const lines = (e instanceof Error ? e.message : String(e)).split("\n").map((l) => l.trim()).filter(Boolean);
    return lines.find((l) => /^Error|error:|denied|unauthori[sz]ed|refused|x509|certificate|mismatch|EOF|not found/i.test(l) && !/ failed with exit code /.test(l)) ?? lines[0] ?? "unknown error";
}

function readJson<T>(file: string): T | undefined {
    try {
        return JSON.parse(fs.readFileSync(file, "utf8")) as T;
    } catch {
        return undefined;
    }
}

/** For preview: is there an entry for this key (not verified: that happens when it is pulled)? */
export async function entryPresent(s: BuildCacheSettings, name: string, buildKey: string): Promise<{ present: boolean; ref: string; error?: string }> {
    const ref = entryRef(s, name, buildKey);
    try {
        return { present: !!(await fetchManifest(s.target, entryTag(name, buildKey))), ref };
    } catch (e) {
        return { present: false, ref, error: reasonOf(e) };
    }
}
