// One image build, content-addressed: <builds>/<name>/<buildKey>/ holds the qcow2, build.json, the package
// manifest, the full build log and result.json. A finished build under the same key is reused as is (no
// rebuild, no re-hash); an interrupted one is cleaned and redone. SHA-256 is computed once, streaming, right
// after qemu-img has written the image.
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic, ensureFreeSpace, explainFsError, freeBytes, FREE_SPACE_ADVICE } from "../atomic";
import { BuildLog, type Progress, seconds } from "../buildlog";
import { acquireFileLock } from "../fileLock";
import { run } from "../exec";
import { hashFile } from "../sha256";
import { removeTree } from "./chroot";
import { checkCommands, requiredCommands } from "./requiredCommands";
import type { ArtifactFormat } from "../recipe";
import { buildIso, ISO_STAGES, type IsoSpec } from "./iso";
import { buildWithPacker, PACKER_STAGES, type PackerQemuSpec } from "./packer";
import { buildPi, PI_STAGES, type PiSpec } from "./pi";
import { buildRootfs, ROOTFS_STAGES, type RootfsSpec } from "./rootfs";

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

export interface BuildRequest {
    name: string;
    buildKey: string;
    version: string;
    builder: "rootfs" | "packer" | "pi" | "iso";
    format: ArtifactFormat;
    rootfs?: Omit<RootfsSpec, "buildInfo" | "buildKey">;
    packer?: Omit<PackerQemuSpec, "buildInfo" | "buildKey">;
    pi?: Omit<PiSpec, "buildInfo" | "buildKey">;
    iso?: Omit<IsoSpec, "buildKey">;
    /** Traceability fields (git commit, recipe hash, tools...) merged into build.json. */
    buildInfo: Record<string, unknown>;
    /** <workDir>/builds and <workDir>/cache. */
    buildsDir: string;
    cacheDir: string;
    /** Minimum free space in the builds file system before a build starts. */
    minFreeBytes?: number;
}

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

/** What a build asks for up front: the recipe's figure, else a little for an ISO and 4 GiB for a disk image. */
function minFreeBytes(req: BuildRequest): number {
    return req.minFreeBytes ?? (req.builder === "iso" ? 256 * 2 ** 20 : 4 * 2 ** 30);
}

/** A builder's tool (xorriso, debootstrap, qemu-img, Packer) that failed for want of space says so in its own words. */
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

export async function qemuImgInfo(file: string): Promise<{ virtualSize: number; format: string }> {
    const { stdout } = await run("qemu-img", ["info", "--output=json", file]);
    const info = JSON.parse(stdout) as { "virtual-size": number; format: string };
    return { virtualSize: info["virtual-size"], format: info.format };
}

/** Builds (or reuses) one image. Progress lines go to `progress`; everything goes to the build log. */
export async function buildImage(req: BuildRequest, progress: Progress = () => undefined): Promise<BuildResult> {
    const cached = await verifiedCachedResult(req.buildsDir, req.name, req.buildKey, progress);
    if (cached) {
        progress(`→ ${req.name}: build ${req.buildKey.slice(0, 12)} already exists (${cached.version}), reusing it`);
        return { ...cached, reused: true };
    }
    checkCommands(`${req.name} (${req.builder} builder)`, requiredCommands(req.builder, {
        playbook: !!(req.rootfs?.playbook ?? req.packer?.playbook ?? req.pi?.playbook),
        installerIso: req.iso?.flavour === "debian-installer",
    }));
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
    const logPath = path.join(dir, "build.log");
    fs.rmSync(logPath, { force: true });
    const log = new BuildLog(logPath, `${req.name} ${req.version}`, progress);
    const t0 = Date.now();
    const work = path.join(dir, "work");
    try {
        ensureFreeSpace(dir, minFreeBytes(req), `a build of ${req.name}`);
        if (process.getuid?.() !== 0 && req.builder !== "iso") {
            throw new Error(`the ${req.builder} builder needs root (debootstrap, chroot, mount, loop devices): run pulumi up as root`);
        }
        log.line(`build ${req.buildKey} of ${req.name} ${req.version}`);
        const buildInfo = { ...req.buildInfo, version: req.version, buildKey: req.buildKey };
        const qcow2 = path.join(dir, `${req.name}.${req.format}`);
        const partial = `${qcow2}.partial`;
        fs.mkdirSync(work, { recursive: true });
        const built = await runBuilder(req, buildInfo, { work, cache: req.cacheDir }, log);
        const fullInfo = { ...buildInfo, base: built.base };
        const digest = await log.stage(built.finishStage, built.stages, async () => {
            fs.rmSync(partial, { force: true });
            await built.finish(partial);
            // The one read of the finished artifact: streaming, 1 MiB at a time.
            const d = await hashFile(partial);
            fs.renameSync(partial, qcow2);
            return d;
        });
        const virtualSize = req.format === "qcow2" ? (await qemuImgInfo(qcow2)).virtualSize : built.virtualSize ?? digest.size;
        const pkgManifestPath = path.join(dir, "pkg-manifest.txt");
        fs.renameSync(built.pkgManifest, pkgManifestPath);
        const buildJsonPath = path.join(dir, "build.json");
        await writeFileAtomic(buildJsonPath, `${JSON.stringify(fullInfo, null, 2)}\n`);
        const result: BuildResult = {
            schemaVersion: RESULT_SCHEMA_VERSION, name: req.name, buildKey: req.buildKey, version: req.version, path: qcow2, format: req.format,
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
        release();
    }
}

interface BuilderOutput {
    /** Writes the final artifact to `out` (the pipeline hashes and renames it). */
    finish: (out: string) => Promise<void>;
    finishStage: string;
    stages: number;
    pkgManifest: string;
    base: unknown;
    virtualSize?: number;
}

// zstd, not zlib: compressing debian-12-minimal's 2 GiB disk took 12.2 s with zlib and 2.1 s with zstd, output 1.6 %
// smaller, byte-identical run to run. Readers need QEMU >= 5.1 built with zstd (QEMU commit "qcow2: add zstd
// cluster compression", 5.1; iotest 287): Debian 12's QEMU 7.2 (our validation and boot gate) is, and so is every
// Proxmox VE since pve-qemu enabled it (proxmox/pve-qemu debian/rules `--enable-zstd`, commit 3aa5b75, 2022-02-24,
// QEMU 6.2 / PVE 7.2; PVE 8 ships QEMU 8.x). An older host can rewrite it: qemu-img convert -O qcow2 in out.
export const QCOW2_OPTIONS = "compat=1.1,cluster_size=65536,compression_type=zstd";

async function convertQcow2(src: string, srcFormat: string, out: string, log: BuildLog): Promise<void> {
    await run("qemu-img", ["convert", "-q", "-c", "-f", srcFormat, "-O", "qcow2", "-o", QCOW2_OPTIONS, src, out], { log });
    await run("qemu-img", ["check", "-q", out], { log, hint: "qemu-img produced an inconsistent image" });
}

async function runBuilder(req: BuildRequest, buildInfo: Record<string, unknown>, dirs: { work: string; cache: string }, log: BuildLog): Promise<BuilderOutput> {
    const key = { buildKey: req.buildKey, buildInfo };
    switch (req.builder) {
        case "rootfs": {
            const r = await buildRootfs({ ...(req.rootfs as NonNullable<BuildRequest["rootfs"]>), ...key }, dirs, log);
            return { finish: (out) => convertQcow2(r.rawDisk, "raw", out, log), finishStage: "convert to qcow2 (compressed, sparse), check, sha256",
                stages: ROOTFS_STAGES, pkgManifest: r.pkgManifest, base: r.base };
        }
        case "packer": {
            const spec = req.packer as NonNullable<BuildRequest["packer"]>;
            if (!spec.base.path || !spec.base.sha256) throw new Error(`${req.name}: the base image ${spec.base.id} has no file yet`);
            const r = await buildWithPacker({ ...spec, ...key }, dirs, log);
            // Recompressed: Packer's qcow2 is uncompressed, and every image ships the same way.
            return { finish: (out) => convertQcow2(r.qcow2, "qcow2", out, log), finishStage: "recompress the qcow2, check, sha256",
                stages: PACKER_STAGES, pkgManifest: r.pkgManifest, base: r.base };
        }
        case "pi": {
            const spec = req.pi as NonNullable<BuildRequest["pi"]>;
            if (!spec.base.path || !spec.base.sha256) throw new Error(`${req.name}: the base image ${spec.base.id} has no file yet`);
            const r = await buildPi({ ...spec, ...key }, dirs, log);
            const rawSize = fs.statSync(r.rawImage).size;
            return {
                finish: (out) => run("sh", ["-c", `xz -T0 -3 -c "${r.rawImage}" > "${out}"`], { log, hint: "xz failed (Debian package xz-utils; is the disk full?)" }).then(() => undefined),
                finishStage: "compress the flashable image (xz), sha256", stages: PI_STAGES, pkgManifest: r.pkgManifest, base: r.base, virtualSize: rawSize,
            };
        }
        case "iso": {
            const r = await buildIso({ ...(req.iso as NonNullable<BuildRequest["iso"]>), buildKey: req.buildKey }, dirs, log);
            return { finish: async (out) => fs.copyFileSync(r.iso, out), finishStage: "sha256 of the ISO", stages: ISO_STAGES, pkgManifest: r.manifest, base: r.base };
        }
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
