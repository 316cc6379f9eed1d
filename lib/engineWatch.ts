// An orphaned dynamic-provider process stops. When the Pulumi CLI dies (SIGKILL, power loss of a terminal, an
// OOM kill), the provider process it started is re-parented and would go on: finish a 20-minute build and then
// hang on its gRPC server forever, holding the build lock. This watches the parent pid; once it changes, it
// sends SIGTERM to every descendant (mmdebstrap, qemu-img, packer, oras …), so the awaited commands fail and the
// builders' own cleanup (unmounting, removing work directories) runs, and exits after a grace period.
import * as fs from "node:fs";

interface WatchState {
    timer: NodeJS.Timeout;
    parent: number;
}

const KEY = "__imageFactoryEngineWatch";

/** The pids of every descendant of `pid`, deepest first, from /proc (Linux). */
export function descendants(pid: number): number[] {
    const children = new Map<number, number[]>();
    for (const entry of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        try {
            // "pid (comm) state ppid …": comm may hold spaces and parentheses, so parse after the last ")".
            const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
            const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
            children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
        } catch {
            /* exited meanwhile */
        }
    }
    const out: number[] = [];
    const walk = (p: number) => {
        for (const c of children.get(p) ?? []) {
            walk(c);
            out.push(c);
        }
    };
    walk(pid);
    return out;
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
    for (const p of pids) {
        try {
            process.kill(p, signal);
        } catch {
            /* already gone */
        }
    }
}

/**
 * Starts watching this process's parent (once per process; later calls do nothing). `graceMs` is how long the
 * cleanup of interrupted commands may take before the process exits and what is left gets SIGKILL.
 */
export function watchEngine(o: { intervalMs?: number; graceMs?: number; log?: (line: string) => void } = {}): void {
    const g = globalThis as unknown as Record<string, WatchState | undefined>;
    if (g[KEY]) return;
    const parent = process.ppid;
    // The engine was the reader of our stderr: a write to it may fail with EPIPE, which must not kill us before
    // the children are stopped.
    const log = o.log ?? ((line: string) => {
        process.stderr.on("error", () => undefined);
        try {
            process.stderr.write(`${line}\n`);
        } catch {
            /* nobody is listening */
        }
    });
    const timer = setInterval(() => {
        if (process.ppid === parent) return;
        clearInterval(timer);
        const tree = descendants(process.pid);
        log(`image-factory: the Pulumi engine (pid ${parent}) is gone; stopping this provider (pid ${process.pid}) and its ${tree.length} child process(es)`);
        signalAll(tree, "SIGTERM");
        setTimeout(() => {
            signalAll(descendants(process.pid), "SIGKILL");
            process.exit(1);
        }, o.graceMs ?? 20_000);
    }, o.intervalMs ?? 2000);
    timer.unref(); // the watch alone never keeps a finished provider alive
    g[KEY] = { timer, parent };
}
