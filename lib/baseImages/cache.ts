// The base-image manager: ensures the files of a catalog entry exist under
//   <cacheRoot>/images/<id>/<version>/   with manifest.json (per-file sha256, size, source URL, time, spec hash)
// A hit needs no network at all; a changed catalog entry (drift) or a missing or corrupt file redoes exactly the
// files concerned; downloads resume, are verified while they stream, and land by atomic rename.
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../atomic";
import { canonicalJson, sha256Hex } from "../sha256";
import { download } from "./download";
import { isToolMissing, toolMissingError, which, debianPackageOf } from "../exec";
import { UserError } from "../errors";
import { hashFile } from "../sha256";
import { applyTransforms, type Transform } from "./transforms";

export interface ManagedArtifactSpec {
    name: string;
    url: string;
    /** sha256 and size of the file as downloaded (size omitted where upstream publishes only the digest). */
    sha256: string;
    size?: number;
    filename: string;
    transforms: Transform[];
}

export interface QemuProfile {
    machine?: string;
    /** Artifact names of the kernel and initrd for direct kernel boot. */
    kernel?: string;
    initrd?: string;
    append?: string;
    disk: { artifact: string; interface: "virtio" | "scsi" | "ide"; format: "qcow2" | "raw" };
}

export interface ManagedImageSpec {
    id: string;
    version: string;
    description: string;
    artifacts: ManagedArtifactSpec[];
    qemu: QemuProfile;
}

export interface ManifestEntry {
    file: string;
    sha256: string;
    size: number;
    sourceUrl: string;
    sourceSha256: string;
    createdAt: string;
    /** Hash of the artifact's catalog spec: a change means drift. */
    specHash: string;
}

export interface CacheManifest {
    schemaVersion: 1;
    id: string;
    version: string;
    specHash: string;
    createdAt: string;
    artifacts: Record<string, ManifestEntry>;
}

export interface EnsuredImage {
    id: string;
    version: string;
    dir: string;
    files: Record<string, { path: string; sha256: string; size: number }>;
    /** What happened, per artifact: hit (from cache), fetched, or rebuilt after drift/corruption. */
    actions: Record<string, "hit" | "fetched">;
}

export interface EnsureOptions {
    cacheRoot: string;
    /** Where to fetch from instead of upstream: a base URL (http(s):// or file://) under which each file is found by its filename. */
    mirror?: string;
    /** Progress lines, throttled (the "→ id version: downloading name (x MB / y MB)…" lines). */
    progress?: (line: string) => void;
    progressEveryMs?: number;
    retries?: number;
    retryDelayMs?: number;
}

export type BaseImageFailure = "download" | "checksum" | "tool" | "offline" | "unknown";

/** A base image that cannot be had: the message says which file, why, and what to do (mirror, catalog, tool). */
export class BaseImageError extends UserError {
    constructor(readonly kind: BaseImageFailure, message: string) {
        super(message);
        this.name = "BaseImageError";
    }
}

export function baseImageError(kind: BaseImageFailure, message: string): BaseImageError {
    return new BaseImageError(kind, message);
}

export function specHash(value: unknown): string {
    return sha256Hex(canonicalJson(value));
}

export function imageDir(cacheRoot: string, id: string, version: string): string {
    return path.join(cacheRoot, "images", id, version);
}

export function lookup(catalog: readonly ManagedImageSpec[], id: string, version: string): ManagedImageSpec {
    const spec = catalog.find((s) => s.id === id && s.version === version);
    if (!spec) {
        throw baseImageError("unknown", `no base image ${id} ${version} in images/catalog.ts; known: ${catalog.map((s) => `${s.id} ${s.version}`).join(", ") || "none"}`);
    }
    return spec;
}

function readManifest(dir: string): CacheManifest | undefined {
    try {
        return JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8")) as CacheManifest;
    } catch {
        return undefined;
    }
}

function mb(n: number | undefined): string {
    return n === undefined ? "? MB" : `${Math.round(n / 1e6)} MB`;
}

function sourceUrl(a: ManagedArtifactSpec, mirror?: string): string {
    return mirror ? `${mirror.replace(/\/+$/, "")}/${encodeURIComponent(a.filename)}` : a.url;
}

/** Copies a file:// source as a download would: streaming through the hash into <dest>.partial, then rename. */
async function copyLocal(url: string, dest: string): Promise<void> {
    const src = decodeURIComponent(new URL(url).pathname);
    if (!fs.existsSync(src)) throw baseImageError("download", `download of ${url} failed: no such file`);
    fs.copyFileSync(src, `${dest}.partial`);
    fs.renameSync(`${dest}.partial`, dest);
}

async function fetchArtifact(spec: ManagedImageSpec, a: ManagedArtifactSpec, dir: string, o: EnsureOptions, log: (l: string) => void): Promise<ManifestEntry> {
    const label = `${spec.id} ${spec.version}`;
    const downloads = path.join(o.cacheRoot, "downloads");
    fs.mkdirSync(downloads, { recursive: true });
    const dl = path.join(downloads, `${spec.id}-${spec.version}-${a.name}-${a.filename}`);
    const url = sourceUrl(a, o.mirror);
    if (a.transforms.some((t) => t.kind === "QemuImgConvert") && !which("qemu-img")) {
        throw baseImageError("tool", `${label}: ${a.name} needs qemu-img to convert it: ${toolMissingError("qemu-img", debianPackageOf("qemu-img")).message}`);
    }
    o.progress?.(`→ ${label}: downloading ${a.name} (${mb(0)} / ${mb(a.size)})…`);
    try {
        if (url.startsWith("file://")) await copyLocal(url, dl);
        else {
            await download({
                url, dest: dl, expectedSize: a.size, retries: o.retries, retryDelayMs: o.retryDelayMs, log,
                progressEveryMs: o.progressEveryMs ?? 2000,
                onProgress: (done, total) => o.progress?.(`→ ${label}: downloading ${a.name} (${mb(done)} / ${mb(total ?? a.size)})…`),
            });
        }
    } catch (err) {
        const e = err as Error & { kind?: string };
        throw baseImageError("download", `${label}: ${e.message}`);
    }
    const got = await hashFile(dl);
    if (got.sha256 !== a.sha256 || (a.size !== undefined && got.size !== a.size)) {
        fs.rmSync(dl, { force: true });
        throw baseImageError("checksum", `${label}: checksum mismatch for ${a.name} (${url}): expected sha256 ${a.sha256}${a.size === undefined ? "" : ` (${a.size} bytes)`}, ` +
            `got ${got.sha256} (${got.size} bytes); the file was removed. If upstream really changed, update images/catalog.ts and bump the version.`);
    }
    // Transforms run in a scratch dir; only the finished file moves into the cache.
    const work = fs.mkdtempSync(path.join(dir, `.work-${a.name}-`));
    try {
        const start = path.join(work, a.filename);
        fs.copyFileSync(dl, start);
        let final: string;
        try {
            final = await applyTransforms(start, a.transforms, log);
        } catch (err) {
            if (isToolMissing(err)) throw baseImageError("tool", `${label}: ${(err as Error).message}`);
            throw err;
        }
        const digest = await hashFile(final);
        const dest = path.join(dir, path.basename(final));
        fs.renameSync(final, dest);
        fs.rmSync(dl, { force: true }); // the finished file is in the cache; a failed transform keeps the download for the next run
        log(`${label}: ${a.name} ready: ${path.basename(dest)} sha256 ${digest.sha256}`);
        return { file: path.basename(dest), sha256: digest.sha256, size: digest.size, sourceUrl: url, sourceSha256: a.sha256,
            createdAt: new Date().toISOString(), specHash: specHash(a) };
    } finally {
        fs.rmSync(work, { recursive: true, force: true });
    }
}

/** Makes sure every file of a catalog entry is in the cache and intact; returns their paths and digests. */
export async function ensureImage(spec: ManagedImageSpec, o: EnsureOptions): Promise<EnsuredImage> {
    const dir = imageDir(o.cacheRoot, spec.id, spec.version);
    fs.mkdirSync(dir, { recursive: true });
    const logFile = path.join(o.cacheRoot, "logs", "image-manager.log");
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    const log = (line: string) => fs.appendFileSync(logFile, `${new Date().toISOString()} ${line}\n`);
    const label = `${spec.id} ${spec.version}`;
    const manifest: CacheManifest = readManifest(dir) ?? { schemaVersion: 1, id: spec.id, version: spec.version, specHash: "", createdAt: new Date().toISOString(), artifacts: {} };
    const actions: EnsuredImage["actions"] = {};
    const wanted = new Set(spec.artifacts.map((a) => a.name));

    for (const a of spec.artifacts) {
        const have = manifest.artifacts[a.name];
        let reason: string | undefined;
        if (!have) reason = "not cached";
        else if (have.specHash !== specHash(a)) reason = "catalog entry changed (drift)";
        else if (!fs.existsSync(path.join(dir, have.file))) reason = "cached file missing";
        else {
            const d = await hashFile(path.join(dir, have.file));
            if (d.sha256 !== have.sha256 || d.size !== have.size) reason = "cached file corrupt";
        }
        if (!reason) {
            actions[a.name] = "hit";
            continue;
        }
        log(`${label}: ${a.name}: ${reason}`);
        if (have && reason !== "not cached") fs.rmSync(path.join(dir, have.file), { force: true });
        try {
            manifest.artifacts[a.name] = await fetchArtifact(spec, a, dir, o, log);
        } catch (err) {
            const e = err as Error & { kind?: string };
            log(`${label}: ${a.name} failed: ${e.message}`);
            if (e.kind === "download" && !have && /refused|does not resolve|unreachable|timed out|reset/.test(e.message)) {
                throw baseImageError("offline", `${label}: cannot fetch ${a.name} and the cache is empty: ${e.message}. ` +
                    "Hydrate the cache on a connected machine (bin/hydrate-base-images) and copy <cache>/images/<id>/<version>/ here, or point IMAGE_FACTORY_BASE_IMAGE_MIRROR at a mirror");
            }
            throw err;
        }
        actions[a.name] = "fetched";
        manifest.specHash = specHash(spec);
        await writeFileAtomic(path.join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    }
    // Artifacts dropped from the catalog entry leave the cache too.
    for (const name of Object.keys(manifest.artifacts)) {
        if (wanted.has(name)) continue;
        fs.rmSync(path.join(dir, manifest.artifacts[name].file), { force: true });
        delete manifest.artifacts[name];
    }
    if (manifest.specHash !== specHash(spec)) {
        manifest.specHash = specHash(spec);
        await writeFileAtomic(path.join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    }
    if (Object.values(actions).every((x) => x === "hit")) o.progress?.(`→ ${label}: cache hit (skipping download)`);
    const files = Object.fromEntries(Object.entries(manifest.artifacts).map(([k, v]) => [k, { path: path.join(dir, v.file), sha256: v.sha256, size: v.size }]));
    return { id: spec.id, version: spec.version, dir, files, actions };
}
