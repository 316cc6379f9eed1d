// A lock file (O_EXCL) shared by processes: around read-modify-write of shared files (release metadata written by
// several resources of one `pulumi up`, the apt archive cache of concurrent builds) and around a whole build of one
// image and key (two stacks sharing a workDir take turns). The file holds "<pid> <token>": a live pid other than
// ours, or our pid with a token this process holds, is a holder to wait for; anything else was left by a process
// that is gone, and is taken over.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { sleep } from "./backoff";

export interface FileLockOptions {
    /** How long to wait for a live holder before failing (default 60 s). */
    timeoutMs?: number;
    /** How often to look again while waiting (default 50 ms). */
    pollMs?: number;
    /** Told once, with the holder's pid, when the lock is taken and we have to wait. */
    onWait?: (holderPid: number) => void;
    /** Appended to the timeout error: what to do about it. */
    hint?: string;
}

/**
 * Tokens of the locks this process holds. Looked up on globalThis at call time: Pulumi serializes a dynamic
 * provider's closure, and a Set captured by it comes back as an object that is not a Set ("incompatible receiver").
 */
function heldTokens(): Set<string> {
    const g = globalThis as unknown as Record<string, Set<string> | undefined>;
    return (g.__imageFactoryFileLocks ??= new Set<string>());
}

/** Whether a process with this id runs (a lock or a .partial whose writer died is taken over or removed). */
export function processAlive(pid: number): boolean {
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
}

/** Takes the lock (waiting for a live holder, taking over a dead one's) and returns its release. */
export async function acquireFileLock(lockPath: string, o: FileLockOptions = {}): Promise<() => void> {
    const timeoutMs = o.timeoutMs ?? 60_000;
    const token = crypto.randomBytes(8).toString("hex");
    const deadline = Date.now() + timeoutMs;
    let told = false;
    for (;;) {
        try {
            fs.writeFileSync(lockPath, `${process.pid} ${token}`, { flag: "wx" });
            heldTokens().add(token);
            return () => {
                heldTokens().delete(token);
                fs.rmSync(lockPath, { force: true });
            };
        } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        }
        let holder: string;
        try {
            holder = fs.readFileSync(lockPath, "utf8");
        } catch {
            continue; // released between our two calls
        }
        const [pidText, theirs] = holder.split(" ");
        const pid = Number(pidText);
        const live = pid === process.pid ? heldTokens().has(theirs ?? "") : pid > 0 && processAlive(pid);
        if (!live) {
            fs.rmSync(lockPath, { force: true }); // stale: its owner died
            continue;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${lockPath} (held by pid ${pid}); ` +
                `${o.hint ?? "remove it if that process is gone"}`);
        }
        if (!told) o.onWait?.(pid);
        told = true;
        await sleep(o.pollMs ?? 50);
    }
}

export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
    const release = await acquireFileLock(lockPath, { timeoutMs });
    try {
        return await fn();
    } finally {
        release();
    }
}
