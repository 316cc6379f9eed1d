// A build root whose commands see the kernel file systems mounted, so package scripts and Ansible behave as on a
// booted system. Since issue 35 those mounts live in each command's own namespace (namespace.ts) and end with it;
// the host-mount helpers below remain for what builds before it left mounted.
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { run, type RunResult } from "../exec";
import { nsRun, type NsMounts } from "./namespace";

export const CHROOT_ENV = {
    DEBIAN_FRONTEND: "noninteractive",
    DEBCONF_NONINTERACTIVE_SEEN: "true",
    LC_ALL: "C.UTF-8",
    LANG: "C.UTF-8",
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
};

/** Mount points at or below dir, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
    const real = fs.existsSync(dir) ? fs.realpathSync(dir) : path.resolve(dir);
    let text = "";
    try {
        text = fs.readFileSync("/proc/self/mountinfo", "utf8");
    } catch {
        return [];
    }
    const points = text.split("\n").map((l) => l.split(" ")[4]).filter((p): p is string => !!p)
        .map((p) => p.replace(/\\040/g, " "))
        .filter((p) => p === real || p.startsWith(`${real}/`));
    return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export async function unmountUnder(dir: string, log?: BuildLog): Promise<void> {
    for (const p of mountsUnder(dir)) {
        try {
            await run("umount", [p], { log });
        } catch {
            await run("umount", ["-l", p], { log });
        }
    }
}

/** Removes a build tree safely: never crosses into a file system still mounted below it. */
export async function removeTree(dir: string, log?: BuildLog): Promise<void> {
    if (!fs.existsSync(dir)) return;
    await unmountUnder(dir, log);
    if (mountsUnder(dir).length) throw new Error(`refusing to delete ${dir}: file systems are still mounted below it`);
    // An image root made without root holds files of the subordinate ids, which only the build namespace may remove.
    try {
        await run("rm", ["-rf", "--one-file-system", dir], { log });
    } catch (e) {
        if (process.getuid?.() === 0) throw e;
        await nsRun(["rm", "-rf", "--one-file-system", dir], { log });
    }
}

/**
 * Gives dir and everything in it back to the caller (uid and gid 0 of its build namespace). apt hands its cache's
 * partial/ to `_apt`: a subordinate id in a namespace, host uid 42 when an earlier version of this program (or any
 * root chroot) ran apt. The caller then cannot clear its own cache, and a namespace whose map lacks that id cannot
 * chown it (EPERM, seen in CI after a cache was shared with a root build). Root may chown anything, so it does this
 * outside; anyone else inside, where their subordinate ids are theirs.
 */
export async function reclaim(dir: string, log?: BuildLog): Promise<void> {
    if (!fs.existsSync(dir)) return;
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    if (uid === 0) {
        await run("chown", ["-R", "--no-dereference", "0:0", dir], { log });
        return;
    }
    try {
        await nsRun(["chown", "-R", "--no-dereference", "0:0", dir], { log });
    } catch (e) {
        throw new Error(`${dir} belongs to an id outside this user's namespace (${uid}:${gid} and its /etc/subuid range), `
            + `left by a build run by another user: remove it (\`sudo rm -rf ${dir}\`) or point IMAGE_FACTORY_CACHE at a cache of your own. ${(e as Error).message}`);
    }
}

/**
 * An image root and the commands run in it. Each command runs in a build namespace of its own (namespace.ts) with
 * proc, sys, a small /dev and the bind mounts asked for mounted inside it for as long as it runs, so nothing is
 * ever mounted on the host.
 */
export class Chroot {
    private readonly binds = new Map<string, string>();
    private systemMounted = false;

    constructor(readonly root: string, private readonly log: BuildLog) {}

    /** The kernel's file systems for every later command (inside each command's namespace). */
    async mountSystem(): Promise<void> {
        this.systemMounted = true;
    }

    async bind(source: string, target: string): Promise<void> {
        fs.mkdirSync(source, { recursive: true });
        this.binds.set(target, source);
    }

    /** Undoes one bind mount (e.g. a shared cache) before the root is cleaned, so the cleaning cannot reach it. */
    async unbind(target: string): Promise<void> {
        this.binds.delete(target);
    }

    async unmountAll(): Promise<void> {
        this.binds.clear();
        this.systemMounted = false;
        await unmountUnder(this.root, this.log); // what a build before issue 35 left mounted
    }

    private mounts(): NsMounts | undefined {
        return this.systemMounted ? { root: this.root, binds: [...this.binds].map(([target, source]) => ({ source, target })) } : undefined;
    }

    /** A command inside the image root (chroot), as its root. */
    exec(args: string[], opts: { env?: Record<string, string>; input?: string; hint?: string } = {}): Promise<RunResult> {
        return this.host(["chroot", this.root, ...args], { ...opts, env: { ...CHROOT_ENV, ...opts.env }, cleanEnv: true });
    }

    /** A host program (Ansible, mkfs, tar) acting on the image root as its root, with the root's mounts in place. */
    host(argv: string[], opts: { env?: Record<string, string>; input?: string; hint?: string; cleanEnv?: boolean; quiet?: boolean } = {}): Promise<RunResult> {
        // quiet: output that is data for the caller (a listing of the tree), not for the build log
        const o = { env: opts.env, cleanEnv: opts.cleanEnv, input: opts.input, log: opts.quiet ? undefined : this.log, hint: opts.hint };
        return nsRun(argv, { ...o, mounts: this.mounts() });
    }

    path(rel: string): string {
        return path.join(this.root, rel.replace(/^\/+/, ""));
    }

    write(rel: string, content: string, mode = 0o644): void {
        const p = this.path(rel);
        fs.mkdirSync(path.dirname(p), { recursive: true });
        try {
            fs.writeFileSync(p, content, { mode });
        } catch (e) {
            // A read-only file of the tree's root (e.g. 0444): without root we own it (namespace.ts), but may not write it as it is.
            if ((e as NodeJS.ErrnoException).code !== "EACCES") throw e;
            fs.chmodSync(p, 0o600);
            fs.writeFileSync(p, content);
        }
        fs.chmodSync(p, mode);
    }
}
