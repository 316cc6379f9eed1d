// What every VM this factory starts needs to boot reliably (Packer's qemu builder, the boot gate, the boot proofs),
// and the watch on its serial console that turns a guest kernel which cannot go on into an error at once.
//
// Why the machine is shaped this way (issue 32): under TCG, qemu's default x86 CPU model (qemu64) has no RDRAND and
// the VM had no entropy device, so the guest's random number generator was not ready when cloud-init first read
// /dev/urandom. Since Linux 5.18 that read runs the jitter-entropy loop (try_to_generate_entropy) until the crng is
// seeded, and under TCG on a busy 2-core host that loop spun for 1000+ s: "soft lockup - CPU#0 stuck [cloud-init]"
// with the trace in urandom_read_iter, sshd never started, and Packer waited out its 30-minute SSH timeout.
//  - virtio-rng-pci backed by the host's /dev/urandom seeds the guest's crng from the hwrng driver in the first
//    seconds of boot (virtio_rng is built into Debian's cloud kernel), whatever the CPU offers;
//  - `-cpu max` under TCG emulates every feature TCG can, RDRAND among them (the kernel trusts it for the first
//    seed, CONFIG_RANDOM_TRUST_CPU), and `-cpu host` under KVM passes the host's CPU through instead of qemu64.
import * as fs from "node:fs";
import { sleep } from "./backoff";

export type Accelerator = "kvm" | "tcg";

/**
 * vCPUs of a VM under TCG. Measured on a 2-core host (boot gate of debian-12-minimal to the end of its checks, and the
 * builder-node Packer build): see GUEST_TCG_CPUS_MEASURED in the README's Performance table. Under KVM a recipe's own
 * count is used.
 */
export const TCG_CPUS = 2;

/**
 * The vCPUs a VM gets: the recipe's count under KVM, at most TCG_CPUS under TCG (IMAGE_FACTORY_TCG_CPUS overrides the
 * bound, for a host with more cores than the one it was measured on).
 */
export function guestCpus(accel: Accelerator | string, cpus = 2, env: NodeJS.ProcessEnv = process.env): number {
    const bound = Number(env.IMAGE_FACTORY_TCG_CPUS) >= 1 ? Math.floor(Number(env.IMAGE_FACTORY_TCG_CPUS)) : TCG_CPUS;
    return accel === "kvm" ? cpus : Math.min(cpus, bound);
}

/** The CPU model and the entropy device of a VM under `accel`, as qemu options (Packer's qemuargs take them as pairs). */
export function guestDeviceArgs(accel: Accelerator | string): string[] {
    return ["-cpu", accel === "kvm" ? "host" : "max", "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"];
}

/** CPU model, entropy device and vCPU count of a VM under `accel` (`cpus`: what the recipe asks for). */
export function guestMachineArgs(accel: Accelerator | string, cpus = 2): string[] {
    return [...guestDeviceArgs(accel), "-smp", String(guestCpus(accel, cpus))];
}

/** A line a guest kernel prints when it is stuck for good (or has died): seeing one, waiting longer gains nothing. */
export interface GuestHang {
    kind: "soft lockup" | "RCU stall" | "hung task" | "kernel panic";
    /** The console line that showed it. */
    line: string;
}

// The kernel's own wording: kernel/watchdog.c ("BUG: soft lockup - CPU#%d stuck for %us!"), kernel/rcu/tree_stall.h
// ("rcu: INFO: %s self-detected stall on CPU", "rcu: INFO: %s detected stalls on CPUs/tasks:"), kernel/panic.c
// ("Kernel panic - not syncing: %s"). A soft lockup and an RCU stall each mean a CPU made no progress for ≥ 20 s of
// guest time (watchdog_thresh 10 × 2; rcu_cpu_stall_timeout 21 s): not a slow boot, a stuck one.
const HANG_SIGNS: Array<{ kind: GuestHang["kind"]; re: RegExp }> = [
    { kind: "kernel panic", re: /Kernel panic - not syncing:/ },
    { kind: "soft lockup", re: /BUG: soft lockup - CPU#\d+ stuck for \d+s!/ },
    { kind: "RCU stall", re: /rcu: INFO: \S+ (?:self-)?detected stalls? on CPU/ },
];

/** The first sign of a stuck guest in console text, if any, with the whole console line it is on. */
export function findGuestHang(text: string): GuestHang | undefined {
    let first: { at: number; kind: GuestHang["kind"] } | undefined;
    for (const s of HANG_SIGNS) {
        const m = s.re.exec(text);
        if (m && (first === undefined || m.index < first.at)) first = { at: m.index, kind: s.kind };
    }
    if (!first) return undefined;
    const end = text.indexOf("\n", first.at);
    const line = text.slice(text.lastIndexOf("\n", first.at) + 1, end < 0 ? undefined : end);
    return { kind: first.kind, line: line.replace(/\r/g, "").trim() };
}

export interface ConsoleWatch {
    /** Resolves when the console shows a hang; never rejects (stop() leaves it pending). */
    readonly hung: Promise<GuestHang>;
    /** The hang seen so far, if any (for loops that poll). */
    readonly seen: GuestHang | undefined;
    stop(): void;
}

/**
 * Watches a serial console file as the guest writes it (it may not exist yet, and qemu truncates it at start): reads
 * only what is new each `intervalMs`, keeping the last partial line so a sign split across two reads is still seen.
 */
export function watchConsole(file: string, intervalMs = 1000): ConsoleWatch {
    let stopped = false;
    let seen: GuestHang | undefined;
    let resolveHang: (h: GuestHang) => void = () => undefined;
    const hung = new Promise<GuestHang>((resolve) => { resolveHang = resolve; });
    let offset = 0;
    let carry = "";
    const poll = (): void => {
        let fd: number | undefined;
        try {
            fd = fs.openSync(file, "r");
            const size = fs.fstatSync(fd).size;
            if (size < offset) { offset = 0; carry = ""; } // a new boot truncated the file
            if (size > offset) {
                const buf = Buffer.alloc(Math.min(size - offset, 4 * 2 ** 20));
                const n = fs.readSync(fd, buf, 0, buf.length, offset);
                offset += n;
                const text = carry + buf.subarray(0, n).toString("latin1");
                const hang = findGuestHang(text);
                if (hang) {
                    seen = hang;
                    stopped = true;
                    resolveHang(hang);
                    return;
                }
                carry = text.slice(Math.max(0, text.lastIndexOf("\n") + 1)).slice(-4096);
            }
        } catch {
            /* not written yet */
        } finally {
            if (fd !== undefined) fs.closeSync(fd);
        }
    };
    void (async () => {
        while (!stopped) {
            poll();
            if (!stopped) await sleep(intervalMs);
        }
    })();
    return {
        hung,
        get seen() { return seen; },
        stop() { stopped = true; },
    };
}

/** The console's last lines, for a failure message. */
export function consoleTail(file: string, lines = 25): string {
    return fs.existsSync(file) ? fs.readFileSync(file, "latin1").replace(/\r/g, "").trimEnd().split("\n").slice(-lines).join("\n") : "(no console output)";
}

/** A command line as one could paste it into a shell. */
export function shellLine(argv: readonly string[]): string {
    return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}

/**
 * The running qemu whose serial console is `consoleLog`: its pid and command line (Packer starts qemu itself, so
 * /proc is the one place its arguments can be read from). Undefined when no such process runs (any more).
 */
export function qemuProcessOf(consoleLog: string): { pid: number; argv: string[] } | undefined {
    let pids: string[];
    try {
        pids = fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p));
    } catch {
        return undefined;
    }
    for (const pid of pids) {
        try {
            const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a !== "");
            if (/qemu-system-/.test(argv[0] ?? "") && argv.some((a) => a.includes(consoleLog))) return { pid: Number(pid), argv };
        } catch {
            /* the process ended meanwhile */
        }
    }
    return undefined;
}

/** The error a stuck guest ends a wait with: what, after how long, the sign, the accelerator, qemu's command, the console. */
export class GuestHangError extends Error {
    constructor(readonly what: string, readonly hang: GuestHang, readonly accel: string, readonly qemuCommand: string | undefined,
        readonly consoleLog: string, elapsedS: number) {
        super(`${what}: the guest kernel reported a ${hang.kind} under ${accel.toUpperCase()} after ${elapsedS.toFixed(0)} s, so the wait stopped there ` +
            `(it would not recover):\n  ${hang.line}\n` +
            `qemu: ${qemuCommand ?? "(its command line could not be read: the process had ended)"}\n` +
            `console (${consoleLog}, kept), last lines:\n${consoleTail(consoleLog)}\n` +
            (accel === "tcg"
                ? "Under TCG (software emulation) a guest is 5-10x slower and a loaded host makes it worse: give this machine KVM " +
                  "(scripts/virt-check.sh says why it has none), or run fewer builds at once (the build budget), then run again."
                : "Under KVM this is a fault inside the guest: the console above shows where it stopped."));
        this.name = "GuestHangError";
    }
}

/** Waits for `work` unless the console shows a hang first; then `onHang` runs (stop the VM) and the hang's error is thrown. */
export async function unlessGuestHangs<T>(work: Promise<T>, watch: ConsoleWatch, onHang: (hang: GuestHang) => Promise<Error>): Promise<T> {
    const outcome = await Promise.race([work.then((value) => ({ value })), watch.hung.then((hang) => ({ hang }))]);
    if ("hang" in outcome) {
        const err = await onHang(outcome.hang);
        await work.catch(() => undefined); // the work ends once the VM is stopped; its own error adds nothing
        throw err;
    }
    return outcome.value;
}
