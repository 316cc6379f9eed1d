// Image roots kept by what made them. The minbase tree (debootstrap's 17 s then; mmdebstrap's since) and the package install (29 s) were most of
// debian-12-minimal's build, and both redo the same work whenever a build of the same suite and package set runs
// again, which is every rebuild for a changed playbook, configuration or key. Each tree is a tar (treesDir())
// named by the sha256 of every input that shapes it: the archives' signed Release files (so a new point release or
// security update is a new tree), the package list, SOURCE_DATE_EPOCH, the host's mmdebstrap and the builders'
// revision. A build whose inputs match unpacks it instead.
//
// A tree just made goes on as it is, and its copy in the cache is what a later build unpacks: the two differ only in
// the order their directories list their entries in (tar lists by name), and mkfs.ext4 -d reads each directory
// sorted by name (e2fsprogs 1.47.0's populate_fs uses scandir with alphasort, seen in a test of two directories
// made in opposite orders giving the same image). tar runs as the trees' root (namespace.ts), so the numeric owners it
// keeps and restores are the image's own ids whether or not the build runs as root. bench/reproducibility.ts builds once without kept trees and once
// from them, and compares the two images byte for byte.
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { cacheRoot } from "../cacheRoot";
import { nsRun } from "./namespace";
import { processAlive } from "../fileLock";
import { canonicalJson, sha256Hex } from "../sha256";
import { removeTree } from "./chroot";

/** How many trees the cache keeps (least recently used go first); each is a few hundred MiB. */
export const TREES_KEPT = 6;

// Owners by number (the host's user names are not the image's), modes, extended attributes (file capabilities
// such as ping's), and nanosecond times (posix format).
const TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--format=posix"];

export function treeKey(inputs: Record<string, unknown>): string {
    return sha256Hex(canonicalJson(inputs));
}

/**
 * The sha256 of an archive's signed InRelease file for one suite (it pins every index, so every package), or
 * undefined when it cannot be read: then that build is not cached, and mmdebstrap or apt say what is wrong.
 */
export async function releaseDigest(archive: string, suite: string, timeoutMs = 15_000): Promise<string | undefined> {
    try {
        const res = await fetch(`${archive.replace(/\/+$/, "")}/dists/${suite}/InRelease`, { signal: AbortSignal.timeout(timeoutMs) });
        if (!res.ok) return undefined;
        return sha256Hex(Buffer.from(await res.arrayBuffer()));
    } catch {
        return undefined;
    }
}

/**
 * Where trees are kept: IMAGE_FACTORY_TREES, else rootfs-trees in the per-user cache (beside the other
 * content-keyed caches, so a fresh clone finds them); undefined (nothing kept) when it is "off".
 */
export function treesDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
    const dir = env.IMAGE_FACTORY_TREES;
    if (dir === "off") return undefined;
    return dir ? path.resolve(dir) : path.join(cacheRoot(env), "rootfs-trees");
}

function treeFile(dir: string, key: string): string {
    return path.join(dir, `${key}.tar`);
}

/** Unpacks the tree kept under `key` into the empty `rootDir`; false when there is none (or it is unreadable). */
export async function restoreTree(dir: string | undefined, key: string | undefined, rootDir: string, log: BuildLog): Promise<boolean> {
    if (!dir || !key) return false;
    const file = treeFile(dir, key);
    if (!fs.existsSync(file)) return false;
    try {
        await nsRun(["tar", "--extract", "--file", file, "--directory", rootDir, ...TAR_FLAGS, "--same-permissions", "--same-owner"], { log });
    } catch (e) {
        // A damaged tree is made again, never half used.
        log.line(`tree ${key.slice(0, 12)} could not be unpacked (${(e as Error).message.split("\n")[0]}); removing it and building the tree again`);
        fs.rmSync(file, { force: true });
        await emptyDir(rootDir, log);
        return false;
    }
    const now = new Date();
    fs.utimesSync(file, now, now); // recently used: kept longest
    log.line(`tree ${key.slice(0, 12)}: unpacked from ${file}`);
    return true;
}

/** Keeps the tree in `rootDir` under `key` (nothing may be mounted below it). Written as .partial, then renamed. */
export async function keepTree(dir: string | undefined, key: string | undefined, rootDir: string, log: BuildLog): Promise<void> {
    if (!dir || !key) return;
    const file = treeFile(dir, key);
    fs.mkdirSync(dir, { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    try {
        await nsRun(["tar", "--create", "--file", partial, "--directory", rootDir, ...TAR_FLAGS, "--sort=name", "."], { log });
        fs.renameSync(partial, file);
    } finally {
        fs.rmSync(partial, { force: true });
    }
    log.line(`tree ${key.slice(0, 12)}: kept in ${file}`);
    pruneTrees(dir, log);
}

async function emptyDir(dir: string, log: BuildLog): Promise<void> {
    await removeTree(dir, log);
    fs.mkdirSync(dir, { recursive: true });
}

function pruneTrees(dir: string, log: BuildLog): void {
    // A .partial an interrupted build left (ours carry the writer's pid, so a live writer's is never touched).
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith(".partial"))) {
        const pid = Number(/\.(\d+)\.partial$/.exec(f)?.[1]);
        if (!processAlive(pid)) fs.rmSync(path.join(dir, f), { force: true });
    }
    const trees = fs.readdirSync(dir).filter((f) => f.endsWith(".tar"))
        .map((f) => ({ f, t: fs.statSync(path.join(dir, f)).mtimeMs }))
        .sort((a, b) => b.t - a.t);
    for (const { f } of trees.slice(TREES_KEPT)) {
        fs.rmSync(path.join(dir, f), { force: true });
        log.line(`tree cache: removed ${f} (least recently used; ${TREES_KEPT} are kept)`);
    }
}
