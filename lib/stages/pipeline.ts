// One image build, content-addressed: <builds>/<name>/<buildKey>/ holds the qcow2, build.json, the package
// manifest, the full build log and result.json. A finished build under the same key is reused as is (no
// rebuild, no re-hash); an interrupted one is cleaned and redone. SHA-256 is computed once, streaming, right
// after qemu-img has written the image.
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic, ensureFreeSpace, explainFsError, freeBytes, FREE_SPACE_ADVICE } from "../atomic";
import { BuildLog, type Progress, seconds } from "../buildlog";
import { admitBuild, type Resources } from "../buildBudget";
import { acquireFileLock } from "../fileLock";
import { hashFile } from "../sha256";
import { removeTree } from "./chroot";
import { qemuImgInfo } from "./disk";
import { checkCommands, requiredCommands } from "./requiredCommands";
import { checkUserNamespaces } from "./namespace";
import type { ArtifactFormat } from "../recipe";
import { isoBuilder, type IsoSpec } from "./iso";
import { packerBuilder, type PackerQemuSpec } from "./packer";
import { piBuilder, type PiSpec } from "./pi";
import { rootfsBuilder, type RootfsSpec } from "./rootfs";
import { runBuilder, type BuildDirs } from "./steps";

export const RESULT_SCHEMA_VERSION = 1;

export interface BuildResult {
    schemaVersion: number;
    name: string;
    buildKey: string;
    version: string;
    /** Absolute path of the artifact (qcow2, .img.xz or .iso) in the build cache. */
    path: string;
    format: ArtifactFormat;
    sha256: string;
    size: number;
    virtualSize: number;
    buildInfo: Record<string, unknown>;
    logPath: string;
    pkgManifestPath: string;
    buildJsonPath: string;
    durationSeconds: number;
    reused?: boolean;
}

interface BuildRequestCommon {
    name: string;
    buildKey: string;
    version: string;
    format: ArtifactFormat;
    /** Traceability fields (git commit, recipe hash, tools...) merged into build.json. */
    buildInfo: Record<string, unknown>;
    /** <workDir>/builds and <workDir>/cache. */
    buildsDir: string;
    cacheDir: string;
    /** Minimum free space in the builds file system before a build starts. */
    minFreeBytes?: number;
}

/** One build: what every builder needs, and the spec of its builder (named by `builder`). */
export type BuildRequest = BuildRequestCommon & (
    | { builder: "rootfs"; rootfs: Omit<RootfsSpec, "buildInfo" | "buildKey"> }
    | { builder: "packer"; packer: Omit<PackerQemuSpec, "buildInfo" | "buildKey"> }
    | { builder: "pi"; pi: Omit<PiSpec, "buildInfo" | "buildKey"> }
    | { builder: "iso"; iso: Omit<IsoSpec, "buildKey"> }
);

/** A request as planned, before the version is chosen (Omit that keeps the union). */
export type PlannedRequest = BuildRequest extends infer R ? R extends BuildRequest ? Omit<R, "version"> : never : never;

export function buildDirOf(buildsDir: string, name: string, buildKey: string): string {
    return path.join(buildsDir, name, buildKey);
}

/** A finished build of this key, if one is on disk and intact (size check only: the digest is trusted). */
export function cachedResult(buildsDir: string, name: string, buildKey: string): BuildResult | undefined {
    const file = path.join(buildDirOf(buildsDir, name, buildKey), "result.json");
    try {
        const r = JSON.parse(fs.readFileSync(file, "utf8")) as BuildResult;
        if (r.schemaVersion !== RESULT_SCHEMA_VERSION || r.buildKey !== buildKey) return undefined;
        if (fs.statSync(r.path).size !== r.size) return undefined;
        return r;
    } catch {
        return undefined;
    }
}

/**
 * A finished build of this key whose file still has the digest it was built with (one streaming hash). A damaged
 * one (a flipped byte keeps the size) is removed, so it is rebuilt and never published as it is.
 */
export async function verifiedCachedResult(buildsDir: string, name: string, buildKey: string, log: (line: string) => void): Promise<BuildResult | undefined> {
    const cached = cachedResult(buildsDir, name, buildKey);
    if (!cached) return undefined;
    const now = await hashFile(cached.path);
    if (now.sha256 === cached.sha256) return cached;
    log(`→ ${name}: the cached build ${buildKey.slice(0, 12)} is damaged (its file hashes to ${now.sha256}, it was built as ${cached.sha256}): removing it and building again`);
    await removeTree(buildDirOf(buildsDir, name, buildKey));
    return undefined;
}

/** A build made elsewhere (a verified build-cache entry, lib/buildCache.ts): its files, and what its statement says. */
export interface AdoptedBuild {
    name: string;
    buildKey: string;
    version: string;
    format: ArtifactFormat;
    /** The artifact's file name in `files`. */
    artifact: string;
    sha256: string;
    size: number;
    virtualSize: number;
    durationSeconds: number;
}

/**
 * Makes a build pulled from the build cache this machine's build of its key, as if it had been built here: the
 * files moved into <builds>/<name>/<key>/ under the build lock, result.json last. `files` must be on the same file
 * system (a directory under buildsDir). A finished build of the key that appeared meanwhile wins.
 */
export async function adoptBuild(buildsDir: string, b: AdoptedBuild, files: string, progress: Progress = () => undefined): Promise<BuildResult> {
    const dir = buildDirOf(buildsDir, b.name, b.buildKey);
    fs.mkdirSync(dir, { recursive: true });
    const release = await acquireFileLock(path.join(dir, ".lock"), {
        timeoutMs: 4 * 3600_000, pollMs: 500,
        onWait: (pid) => progress(`→ waiting for another build of the same image and key (pid ${pid}) to finish: ${dir}`),
    });
    try {
        const meanwhile = await verifiedCachedResult(buildsDir, b.name, b.buildKey, progress);
        if (meanwhile) return meanwhile;
        const artifact = path.join(dir, `${b.name}.${b.format}`);
        fs.renameSync(path.join(files, b.artifact), artifact);
        for (const f of ["build.json", "pkg-manifest.txt", "build.log"]) fs.renameSync(path.join(files, f), path.join(dir, f));
        const buildInfo = JSON.parse(fs.readFileSync(path.join(dir, "build.json"), "utf8")) as Record<string, unknown>;
        const result: BuildResult = {
            schemaVersion: RESULT_SCHEMA_VERSION, name: b.name, buildKey: b.buildKey, version: b.version, path: artifact, format: b.format,
            sha256: b.sha256, size: b.size, virtualSize: b.virtualSize, buildInfo, logPath: path.join(dir, "build.log"),
            pkgManifestPath: path.join(dir, "pkg-manifest.txt"), buildJsonPath: path.join(dir, "build.json"), durationSeconds: b.durationSeconds,
        };
        await writeFileAtomic(path.join(dir, "result.json"), `${JSON.stringify(result, null, 2)}\n`);
        return result;
    } finally {
        release();
    }
}

/** What a build asks for up front: the recipe's figure, else a little for an ISO and 4 GiB for a disk image. */
function minFreeBytes(req: BuildRequest): number {
    return req.minFreeBytes ?? (req.builder === "iso" ? 256 * 2 ** 20 : 4 * 2 ** 30);
}

/** A builder's tool (xorriso, mmdebstrap, qemu-img, Packer) that failed for want of space says so in its own words. */
function ranOutOfSpace(err: unknown): boolean {
    const e = err as NodeJS.ErrnoException;
    return e?.code === "ENOSPC" || /no space left on device|exceeds free space|disk quota exceeded|ENOSPC/i.test(String(e?.message ?? ""));
}

/** The full disk first (directory, bytes free now, what the build asked for), the tool's own words after it. */
function outOfSpaceError(err: Error, req: BuildRequest, dir: string): Error {
    const free = freeBytes(dir);
    return new Error(`the build of ${req.name} ran out of disk space in ${dir} (${free ?? "?"} bytes free now; builds of this image ask for ` +
        `${minFreeBytes(req)} up front): ${FREE_SPACE_ADVICE}; nothing was published and the build's work files were removed.\n${err.message}`);
}

/** Builds (or reuses) one image. Progress lines go to `progress`; everything goes to the build log. */
export async function buildImage(req: BuildRequest, progress: Progress = () => undefined): Promise<BuildResult> {
    const cached = await verifiedCachedResult(req.buildsDir, req.name, req.buildKey, progress);
    if (cached) {
        progress(`→ ${req.name}: build ${req.buildKey.slice(0, 12)} already exists (${cached.version}), reusing it`);
        return { ...cached, reused: true };
    }
    checkCommands(`${req.name} (${req.builder} builder)`, requiredCommands(req.builder, {
        playbook: !!playbookOf(req),
        installerIso: req.builder === "iso" && req.iso.flavour === "debian-installer",
    }));
    // The rootfs and Pi builders work as root of a user namespace (namespace.ts), whoever runs them.
    if (req.builder === "rootfs" || req.builder === "pi") await checkUserNamespaces();
    const dir = buildDirOf(req.buildsDir, req.name, req.buildKey);
    fs.mkdirSync(dir, { recursive: true });
    // One build per image and key at a time, across processes: two stacks sharing a workDir (or a re-run beside an
    // orphaned provider) take turns.
    const waitS = Number(process.env.IMAGE_FACTORY_BUILD_LOCK_WAIT_S ?? 4 * 3600);
    const release = await acquireFileLock(path.join(dir, ".lock"), {
        timeoutMs: waitS * 1000, pollMs: 500,
        onWait: (pid) => progress(`→ waiting for another build of the same image and key (pid ${pid}) to finish: ${dir}`),
        hint: "wait for that build, or remove the file if that process is gone (IMAGE_FACTORY_BUILD_LOCK_WAIT_S sets how long to wait)",
    });
    // Our turn may come after another process built this very key: then it is a cache hit after all.
    const builtMeanwhile = await verifiedCachedResult(req.buildsDir, req.name, req.buildKey, progress).catch((e: Error) => {
        release();
        throw e;
    });
    if (builtMeanwhile) {
        release();
        progress(`→ ${req.name}: build ${req.buildKey.slice(0, 12)} was made by the build we waited for (${builtMeanwhile.version}), reusing it`);
        return { ...builtMeanwhile, reused: true };
    }
    // Room on the machine: the cores and memory this build uses, beside the builds already running.
    let leave: () => Promise<void>;
    try {
        leave = await admitBuild(`${req.name} (${req.builder})`, resourcesOf(req), progress);
    } catch (e) {
        release();
        throw e;
    }
    const logPath = path.join(dir, "build.log");
    fs.rmSync(logPath, { force: true });
    const log = new BuildLog(logPath, `${req.name} ${req.version}`, progress);
    const t0 = Date.now();
    const work = path.join(dir, "work");
    try {
        ensureFreeSpace(dir, minFreeBytes(req), `a build of ${req.name}`);
        log.line(`build ${req.buildKey} of ${req.name} ${req.version}`);
        const buildInfo = { ...req.buildInfo, version: req.version, buildKey: req.buildKey };
        const artifact = path.join(dir, `${req.name}.${req.format}`);
        const partial = `${artifact}.partial`;
        fs.mkdirSync(work, { recursive: true });
        fs.rmSync(partial, { force: true });
        const { digest, output: built } = await build(req, buildInfo, { work, cache: req.cacheDir }, log, partial, async (out) => {
            // The one read of the finished artifact: streaming, 1 MiB at a time.
            const d = await hashFile(out);
            fs.renameSync(out, artifact);
            return d;
        });
        const fullInfo = { ...buildInfo, base: built.base };
        const virtualSize = req.format === "qcow2" ? (await qemuImgInfo(artifact)).virtualSize : built.virtualSize ?? digest.size;
        const pkgManifestPath = path.join(dir, "pkg-manifest.txt");
        fs.renameSync(built.pkgManifest, pkgManifestPath);
        const buildJsonPath = path.join(dir, "build.json");
        await writeFileAtomic(buildJsonPath, `${JSON.stringify(fullInfo, null, 2)}\n`);
        const result: BuildResult = {
            schemaVersion: RESULT_SCHEMA_VERSION, name: req.name, buildKey: req.buildKey, version: req.version, path: artifact, format: req.format,
            sha256: digest.sha256, size: digest.size, virtualSize, buildInfo: fullInfo, logPath, pkgManifestPath, buildJsonPath,
            durationSeconds: Math.round((Date.now() - t0) / 1000),
        };
        // result.json last: its presence is what marks the build as finished.
        await writeFileAtomic(path.join(dir, "result.json"), `${JSON.stringify(result, null, 2)}\n`);
        log.info(`→ ${req.name} ${req.version}: built in ${seconds(Date.now() - t0)}, ${digest.size} bytes, sha256 ${digest.sha256}`);
        return result;
    } catch (err) {
        log.line(`build failed: ${(err as Error).stack ?? String(err)}`);
        fs.rmSync(path.join(dir, `${req.name}.${req.format}.partial`), { force: true });
        const e = ranOutOfSpace(err) ? outOfSpaceError(err as Error, req, dir) : explainFsError(err, dir);
        e.message = `${e.message}\n(full build log: ${logPath})`;
        throw e;
    } finally {
        await removeTree(work, log).catch((e: Error) => log.line(`could not remove ${work}: ${e.message}`));
        log.close();
        await leave().catch(() => undefined); // a holder whose process ends is dropped anyway
        release();
    }
}

/** The cores and memory a build uses while it runs. */
function resourcesOf(req: BuildRequest): Resources {
    switch (req.builder) {
        case "packer": return { cpus: req.packer.cpus, memoryMiB: req.packer.memoryMiB + 512 }; // the VM, plus Packer and qemu
        case "iso": return { cpus: 1, memoryMiB: 256 };
        // mmdebstrap, apt, mkfs and qemu-img one after another; the Pi builder's chroot runs under qemu-user
        case "rootfs":
        case "pi": return { cpus: 1, memoryMiB: 1024 };
    }
}

/** The recipe's playbook, for the builders that run one. */
function playbookOf(req: BuildRequest): string | undefined {
    switch (req.builder) {
        case "rootfs": return req.rootfs.playbook;
        case "packer": return req.packer.playbook;
        case "pi": return req.pi.playbook;
        case "iso": return undefined;
    }
}

/** Runs the request's builder: its steps, then its finish into `partial`, hashed by `digest`. */
function build<D>(req: BuildRequest, buildInfo: Record<string, unknown>, dirs: BuildDirs, log: BuildLog, partial: string, digest: (out: string) => Promise<D>) {
    const key = { buildKey: req.buildKey, buildInfo };
    switch (req.builder) {
        case "rootfs": return runBuilder(rootfsBuilder, { ...req.rootfs, ...key }, dirs, log, partial, digest);
        case "packer": return runBuilder(packerBuilder, { ...req.packer, ...key }, dirs, log, partial, digest);
        case "pi": return runBuilder(piBuilder, { ...req.pi, ...key }, dirs, log, partial, digest);
        case "iso": return runBuilder(isoBuilder, { ...req.iso, buildKey: req.buildKey }, dirs, log, partial, digest);
    }
}

/** Removes older builds of an image, keeping the newest `keep` finished ones and the current key. */
export async function pruneBuilds(buildsDir: string, name: string, currentKey: string, keep = 2): Promise<string[]> {
    const dir = path.join(buildsDir, name);
    if (!fs.existsSync(dir)) return [];
    const finished = fs.readdirSync(dir)
        .filter((k) => k !== currentKey && fs.existsSync(path.join(dir, k, "result.json")))
        .map((k) => ({ k, t: fs.statSync(path.join(dir, k, "result.json")).mtimeMs }))
        .sort((a, b) => b.t - a.t);
    const removed: string[] = [];
    for (const { k } of finished.slice(Math.max(0, keep - 1))) {
        await removeTree(path.join(dir, k));
        removed.push(k);
    }
    return removed;
}
