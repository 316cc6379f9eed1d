// A build root with the kernel file systems mounted, so package scripts and Ansible behave as on a booted
// system. Every mount is undone in unmountAll(), also after failures and after a crash of an earlier run.
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { run, type RunResult } from "../exec";

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
    await run("rm", ["-rf", "--one-file-system", dir], { log });
}

export class Chroot {
    constructor(readonly root: string, private readonly log: BuildLog) {}

    async mountSystem(): Promise<void> {
        await this.mount(["-t", "proc", "proc"], "proc");
        await this.mount(["-t", "sysfs", "sysfs"], "sys");
        await this.mount(["--bind", "/dev"], "dev");
        await this.mount(["-t", "devpts", "devpts", "-o", "gid=5,mode=620,ptmxmode=000"], "dev/pts");
    }

    async bind(source: string, target: string): Promise<void> {
        fs.mkdirSync(source, { recursive: true });
        await this.mount(["--bind", source], target);
    }

    private async mount(args: string[], target: string): Promise<void> {
        const mp = path.join(this.root, target);
        fs.mkdirSync(mp, { recursive: true });
        await run("mount", [...args, mp], { log: this.log });
    }

    /** Undoes one bind mount (e.g. a shared cache) before the root is cleaned, so the cleaning cannot reach it. */
    async unbind(target: string): Promise<void> {
        await run("umount", [path.join(this.root, target)], { log: this.log });
    }

    async unmountAll(): Promise<void> {
        await unmountUnder(this.root, this.log);
    }

    exec(args: string[], opts: { env?: Record<string, string>; input?: string; hint?: string } = {}): Promise<RunResult> {
        return run("chroot", [this.root, ...args], { env: { ...CHROOT_ENV, ...opts.env }, cleanEnv: true, input: opts.input, log: this.log, hint: opts.hint });
    }

    path(rel: string): string {
        return path.join(this.root, rel.replace(/^\/+/, ""));
    }

    write(rel: string, content: string, mode = 0o644): void {
        const p = this.path(rel);
        fs.mkdirSync(path.dirname(p), { recursive: true });
        fs.writeFileSync(p, content, { mode });
        fs.chmodSync(p, mode);
    }
}
