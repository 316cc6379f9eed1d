// The boot gate: an image is booted the way a consumer boots it before anything publishes it. A copy-on-write
// overlay (never the artifact itself, so its bytes and sha256 stay as built), a NoCloud seed that sets the hostname
// and gives the bootstrap user a throw-away key, qemu with KVM when it really runs guests (else TCG), then one SSH
// session runs the smoke checks and prints one line per check. The console log and the report are the evidence.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import execa from "execa";
import { nocloudMetaData, nocloudUserData } from "../isoFormat";
import { run } from "../exec";
import { sleep } from "../backoff";
import { canonicalJson, sha256Hex } from "../sha256";
import { consoleTail, findGuestHang, guestMachineArgs, shellLine, watchConsole, type Accelerator, type ConsoleWatch, type GuestHang } from "../guestVm";

export { consoleTail, type Accelerator } from "../guestVm";

/** What a boot runs on this machine (checked with the builders' commands before any work). */
export const BOOT_GATE_COMMANDS = ["qemu-system-x86_64", "qemu-img", "ssh", "ssh-keygen", "xorriso"];

export interface BootCheckOptions {
    /** The qcow2 to boot (read only: an overlay takes every write). */
    image: string;
    name: string;
    /** The bootstrap user the image (and its seed) provide, and the hostname the seed sets. */
    user: string;
    hostname: string;
    domain?: string;
    /** Scratch directory for the overlay, seed, key and console log (removed afterwards but for the log). */
    workDir: string;
    /** Accelerators to try in order; default: KVM then TCG when /dev/kvm opens, else TCG. */
    accelerators?: Accelerator[];
    /** Seconds from qemu start until SSH answers and the checks are done. */
    timeoutSeconds?: number;
    /** A recipe's own smoke commands (images/<name>/smoke.sh): run with sudo after the common checks. */
    smokeScript?: string;
    /** Where the guest's serial console goes (default <workDir>/<name>-console.log); it is kept. */
    consoleLog?: string;
    /** Extra room for the root file system to grow into (proves growpart/resize ran), MiB. */
    growMiB?: number;
    log?: (line: string) => void;
}

export interface SmokeCheck {
    id: string;
    passed: boolean;
    detail: string;
}

export interface BootReport {
    passed: boolean;
    accelerator: Accelerator;
    /** Seconds from qemu start to the first SSH login, and to the end of the checks. */
    sshReadySeconds: number;
    totalSeconds: number;
    checks: SmokeCheck[];
    /** The guest's serial console, kept in workDir. */
    consoleLog: string;
    /** How qemu was started (a failure message shows it). */
    qemuCommand?: string;
}

/**
 * What a kept boot report stands for: the bytes, the user and hostname, the recipe's smoke script and, since the
 * common checks are code that changes (the network check learned about the resolver), the common script itself
 * (its disk-size bound, a function of the bytes already in the key, left out). A build-cache entry carries the
 * report under this key, so a builder that pulls it finds it where its own boot would have left it.
 */
export function bootReportKey(sha256: string, user: string, boot: { hostname: string; smokeSha256?: string; seed?: { baseImage?: string; baseSha256: string; authorizedKeys: string[] } },
    common = smokeScript({ user, hostname: boot.hostname, minRootBytes: 0 })): string {
    return sha256Hex(canonicalJson([sha256, user, boot.hostname, boot.smokeSha256 ?? null,
        boot.seed ? [boot.seed.baseSha256, boot.seed.authorizedKeys] : null, common]));
}

/** Where the boot gate keeps the report of a boot (its console log beside it, -console.log). */
export function bootReportFile(scratchDir: string, image: string, key: string): string {
    return path.join(scratchDir, "boots", `${image}-${key.slice(0, 24)}.json`);
}

/** The checks, as one POSIX sh script: `CHECK <id> ok|fail <detail>` per line. */
export function smokeScript(o: { user: string; hostname: string; minRootBytes: number }): string {
    return [
        "set -u",
        "line() { printf 'CHECK %s %s %s\\n' \"$1\" \"$2\" \"$(printf '%s' \"$3\" | tr '\\n' ' ' | cut -c1-400)\"; }",
        "ck() { id=$1; shift; if out=$(\"$@\" 2>&1); then line \"$id\" ok \"$out\"; else line \"$id\" fail \"$out\"; fi; }",
        // cloud-init first: everything after depends on it having finished.
        "ck cloud-init sh -c 'st=$(cloud-init status --wait 2>&1 | tail -n 1); echo \"$st\"; [ \"$st\" = \"status: done\" ]'",
        "ck system-running sh -c 's=$(systemctl is-system-running --wait 2>&1); echo \"$s\"; [ \"$s\" = running ] || { systemctl --failed --no-legend --plain; exit 1; }'",
        "ck sudo sudo -n true",
        "ck python3 python3 -c 'import sys; print(sys.version.split()[0])'",
        "ck sshd-posture sh -c 't=$(sudo -n sshd -T); echo \"$t\" | grep -Ei \"^(passwordauthentication|permitrootlogin|kbdinteractiveauthentication) \";" +
            " echo \"$t\" | grep -qx \"passwordauthentication no\" && echo \"$t\" | grep -Eqx \"permitrootlogin (no|prohibit-password|without-password)\"'",
        `ck hostname sh -c 'h=$(hostname); echo "$h"; [ "$h" = "${o.hostname}" ]'`,
        `ck bootstrap-user sh -c 'u=$(id -un); echo "$u"; [ "$u" = "${o.user}" ]'`,
        `ck rootfs-grown sh -c 's=$(df -B1 --output=size / | tail -n 1 | tr -d " "); echo "$s bytes"; [ "$s" -ge ${o.minRootBytes} ]'`,
        // The image ships an empty resolver file (rootfs cleanup): this boot's DHCP client must have filled it.
        "ck network sh -c 'ip -4 -o addr show scope global; ip -4 route show default | grep -q default && grep \"^nameserver \" /etc/resolv.conf'",
        "",
    ].join("\n");
}

/** Parses the script's output; a check that printed nothing failed (the session ended early). */
export function parseSmoke(out: string, expected: string[]): SmokeCheck[] {
    const seen = new Map<string, SmokeCheck>();
    for (const l of out.split("\n")) {
        const m = /^CHECK (\S+) (ok|fail) ?(.*)$/.exec(l.trim());
        if (m) seen.set(m[1], { id: m[1], passed: m[2] === "ok", detail: m[3].trim() });
    }
    const missing = expected.filter((id) => !seen.has(id)).map((id) => ({ id, passed: false, detail: "no result (the SSH session ended before this check)" }));
    return [...seen.values(), ...missing];
}

export const COMMON_CHECKS = ["cloud-init", "system-running", "sudo", "python3", "sshd-posture", "hostname", "bootstrap-user", "rootfs-grown", "network"];

/** A free TCP port on loopback (for qemu's SSH forward; tests use it for their services too). */
export async function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.listen(0, "127.0.0.1", () => {
            const port = (srv.address() as net.AddressInfo).port;
            srv.close(() => resolve(port));
        });
        srv.on("error", reject);
    });
}

/**
 * The headless x86 machine every boot of ours uses: 1 GiB (or `memoryMiB`), the CPU model, vCPUs and entropy device a guest needs
 * under this accelerator (guestMachineArgs says why), serial console to a file, user-mode network (with SSH
 * forwarded to 127.0.0.1:`sshPort` when given); `extra` adds drives and boot options.
 */
export function qemuX86Args(o: { accel: string; consoleLog: string; sshPort?: number; extra: string[]; memoryMiB?: number }): string[] {
    return ["-machine", "pc", "-m", String(o.memoryMiB ?? 1024), ...guestMachineArgs(o.accel), "-display", "none", "-monitor", "none", "-serial", `file:${o.consoleLog}`,
        "-accel", o.accel, ...o.extra, "-netdev", o.sshPort ? `user,id=n0,hostfwd=tcp:127.0.0.1:${o.sshPort}-:22` : "user,id=n0", "-device", "virtio-net-pci,netdev=n0"];
}

/** A boot that ended because the console showed the guest stuck: one failed check that names the sign. */
function hungReport(accel: Accelerator, w: ConsoleWatch, elapsedS: number, consoleLog: string, qemuCommand: string): BootReport | undefined {
    const hang = w.seen;
    return hang && { passed: false, accelerator: accel, sshReadySeconds: -1, totalSeconds: elapsedS, consoleLog, qemuCommand,
        checks: [{ id: "guest-kernel", passed: false, detail: `${hang.kind} on the console after ${elapsedS.toFixed(0)} s: ${hang.line}` }] };
}

/** ssh options for logging in to a guest booted here: throw-away host keys, no prompts, short connect timeout. */
export function guestSshArgs(key: string, port: number, user: string): string[] {
    return ["-i", key, "-p", String(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", `${user}@127.0.0.1`];
}

function kvmOpens(): boolean {
    try {
        fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
        return true;
    } catch {
        return false;
    }
}


/** Boots `image` and runs the smoke checks. Resolves with the report (passed or not); rejects only when it cannot boot at all. */
export async function bootCheck(o: BootCheckOptions): Promise<BootReport> {
    const log = o.log ?? (() => undefined);
    fs.mkdirSync(o.workDir, { recursive: true });
    const scratch = fs.mkdtempSync(path.join(o.workDir, "boot-"));
    const consoleLog = o.consoleLog ?? path.join(o.workDir, `${o.name}-console.log`);
    try {
        const info = JSON.parse((await run("qemu-img", ["info", "--output=json", o.image])).stdout) as { "virtual-size": number };
        const growBytes = (o.growMiB ?? 512) * 2 ** 20;
        const overlay = path.join(scratch, "overlay.qcow2");
        await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", path.resolve(o.image), "-F", "qcow2", overlay, String(info["virtual-size"] + growBytes)]);
        const key = path.join(scratch, "id_ed25519");
        await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "image-factory-boot-check", "-f", key]);
        const seedDir = path.join(scratch, "seed");
        fs.mkdirSync(seedDir);
        fs.writeFileSync(path.join(seedDir, "user-data"), nocloudUserData({
            hostname: o.hostname, domain: o.domain ?? "boot-check.invalid",
            user: { name: o.user, authorizedKeys: [fs.readFileSync(`${key}.pub`, "utf8").trim()] },
        }));
        fs.writeFileSync(path.join(seedDir, "meta-data"), nocloudMetaData({ name: `${o.name}-boot`, hostname: o.hostname, buildKey: `${Date.now()}`.padEnd(12, "0") }));
        const seed = path.join(scratch, "seed.iso");
        await run("xorriso", ["-as", "mkisofs", "-quiet", "-o", seed, "-V", "cidata", "-J", "-r", seedDir]);

        // The root file system must have grown into most of the extra room: growpart and resize2fs ran.
        const minRootBytes = Math.floor(info["virtual-size"] + growBytes * 0.5);
        const script = smokeScript({ user: o.user, hostname: o.hostname, minRootBytes });
        const extra = o.smokeScript && fs.existsSync(o.smokeScript) ? fs.readFileSync(o.smokeScript, "utf8") : undefined;
        // A KVM that opens but cannot run a guest (nested virtualisation without VT-x) is remembered until the
        // machine reboots: every later boot would lose 20 s finding out again.
        const kvmMarker = path.join(os.tmpdir(), "image-factory-kvm-cannot-run-guests");
        const bootId = fs.existsSync("/proc/sys/kernel/random/boot_id") ? fs.readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() : "";
        const kvmKnownBroken = fs.existsSync(kvmMarker) && fs.readFileSync(kvmMarker, "utf8").trim() === bootId;
        const accelerators = o.accelerators ?? (kvmOpens() && !kvmKnownBroken ? ["kvm", "tcg"] as Accelerator[] : ["tcg"] as Accelerator[]);
        for (const accel of accelerators) {
            const port = await freePort();
            fs.rmSync(consoleLog, { force: true });
            const args = qemuX86Args({ accel, consoleLog, sshPort: port,
                extra: ["-drive", `file=${overlay},if=virtio,format=qcow2`, "-drive", `file=${seed},if=virtio,format=raw,readonly=on`] });
            log(`→ ${o.name}: booting under ${accel.toUpperCase()} (overlay; the artifact is not written)`);
            const qemuCommand = shellLine(["qemu-system-x86_64", ...args]);
            const qemu = execa("qemu-system-x86_64", args, { reject: false, all: true });
            const started = Date.now();
            const elapsed = () => (Date.now() - started) / 1000;
            // A guest kernel that reports a lockup, an RCU stall or a panic will not recover: stop at once, not at the deadline.
            const watch = watchConsole(consoleLog);
            const hung = () => hungReport(accel, watch, elapsed(), consoleLog, qemuCommand);
            // An ssh command that ends early when the guest hangs (its own timeout would keep the wait going).
            const sshUnlessHung = async (sshArgs: string[], opts: execa.Options): Promise<execa.ExecaReturnValue | undefined> => {
                const cmd = execa("ssh", sshArgs, { ...opts, reject: false });
                const r = await Promise.race([cmd, watch.hung.then(() => undefined)]);
                if (r === undefined) {
                    cmd.kill("SIGKILL");
                    await cmd.catch(() => undefined);
                }
                return r as execa.ExecaReturnValue | undefined;
            };
            try {
                if (accel === "kvm") {
                    // Under KVM the kernel banner shows within seconds; silence means this KVM cannot run guests.
                    let up = false;
                    for (let i = 0; i < 40 && !up && qemu.exitCode === null; i++) {
                        await sleep(500);
                        up = fs.existsSync(consoleLog) && fs.readFileSync(consoleLog, "latin1").includes("Linux version");
                    }
                    if (!up) {
                        log(`→ ${o.name}: the guest kernel did not start under KVM within 20 s; trying TCG (and using it until this machine reboots)`);
                        fs.writeFileSync(kvmMarker, `${bootId}\n`);
                        continue;
                    }
                }
                const deadline = started + (o.timeoutSeconds ?? (accel === "kvm" ? 240 : 600)) * 1000;
                const ssh = guestSshArgs(key, port, o.user);
                let ready = -1;
                while (Date.now() < deadline && qemu.exitCode === null && !watch.seen) {
                    const r = await sshUnlessHung([...ssh, "true"], { timeout: 15_000 });
                    if (r?.exitCode === 0) {
                        ready = elapsed();
                        break;
                    }
                    await Promise.race([sleep(2000), watch.hung]);
                }
                if (ready < 0) {
                    return hung() ?? { passed: false, accelerator: accel, sshReadySeconds: -1, totalSeconds: elapsed(), consoleLog, qemuCommand,
                        checks: [{ id: "ssh-login", passed: false, detail: qemu.exitCode !== null ? `qemu exited ${qemu.exitCode}: ${(qemu as unknown as { all?: string }).all ?? ""}` : `no SSH login as ${o.user} within ${Math.round(elapsed())} s` }] };
                }
                log(`→ ${o.name}: SSH answered after ${ready.toFixed(0)} s; running the smoke checks`);
                // sshd may restart once while cloud-init finishes (host keys, ssh_pwauth): ssh's own failure (255) is retried.
                let out = "";
                for (let attempt = 0; attempt < 5 && !watch.seen; attempt++) {
                    const left = Math.max(30_000, deadline - Date.now());
                    const r = await sshUnlessHung([...ssh, "sh", "-s"], { input: script, timeout: left, all: true });
                    out = r?.stdout ?? "";
                    if (!r || r.exitCode !== 255 || /^CHECK /m.test(out)) break;
                    await sleep(3000);
                }
                const checks = parseSmoke(out, COMMON_CHECKS);
                checks.unshift({ id: "ssh-login", passed: true, detail: `${o.user} with the seed's key after ${ready.toFixed(0)} s` });
                if (extra !== undefined && !watch.seen) {
                    const r = await sshUnlessHung([...ssh, "sudo", "-n", "sh", "-eu", "-s"], { input: extra, timeout: 300_000, all: true });
                    if (r) checks.push({ id: "recipe-smoke", passed: r.exitCode === 0, detail: `exit ${r.exitCode}: ${(r.all ?? "").split("\n").slice(-8).join(" ").slice(0, 400)}` });
                }
                const stuck = hung();
                if (stuck) return { ...stuck, sshReadySeconds: ready, checks: [...checks.filter((c) => c.passed), ...stuck.checks] };
                await execa("ssh", [...ssh, "sudo", "-n", "poweroff"], { reject: false, timeout: 15_000 });
                return { passed: checks.every((c) => c.passed), accelerator: accel, sshReadySeconds: ready, totalSeconds: elapsed(), checks, consoleLog, qemuCommand };
            } finally {
                watch.stop();
                if (qemu.exitCode === null) {
                    await Promise.race([qemu, sleep(watch.seen ? 0 : 5000)]);
                    if (qemu.exitCode === null) qemu.kill("SIGKILL");
                }
                await qemu;
            }
        }
        throw new Error(`${o.name}: could not boot under ${accelerators.join(" or ")}; console: ${consoleLog}`);
    } finally {
        fs.rmSync(scratch, { recursive: true, force: true });
    }
}

/** A failing boot as the error `pulumi up` stops with: the image, the failed checks, the console's last lines. */
export function bootFailure(name: string, version: string, r: BootReport): Error {
    const failed = r.checks.filter((c) => !c.passed).map((c) => `  FAIL ${c.id}: ${c.detail}`).join("\n");
    return new Error(`boot check of ${name} ${version} failed under ${r.accelerator.toUpperCase()} after ${r.totalSeconds.toFixed(0)} s:\n${failed}\n` +
        (r.qemuCommand ? `qemu: ${r.qemuCommand}\n` : "") +
        `console (${r.consoleLog}), last lines:\n${consoleTail(r.consoleLog)}\nThe image is not published.`);
}

export interface SeedBootOptions {
    /** The NoCloud seed ISO under test, attached read only. */
    seedIso: string;
    /** A cloud image to boot it with (an overlay of it: the base is never written). */
    baseImage: string;
    name: string;
    /** What the seed sets: its hostname and bootstrap user. */
    hostname: string;
    user: string;
    /** The seed's public keys: each must show in cloud-init's fingerprint table for the user. */
    authorizedKeys: string[];
    workDir: string;
    consoleLog?: string;
    timeoutSeconds?: number;
    accelerators?: Accelerator[];
    log?: (line: string) => void;
}

/** cloud-init's "Fingerprint (sha256)" of an OpenSSH public key line: the key blob's sha256 as colon-separated hex. */
export function ciFingerprint(publicKey: string): string {
    const blob = Buffer.from(publicKey.trim().split(/\s+/)[1] ?? "", "base64");
    return (crypto.createHash("sha256").update(blob).digest("hex").match(/../g) as string[]).join(":");
}

/**
 * A NoCloud seed proven by a boot: a cloud image boots with the seed attached, and the serial console shows what the
 * seed did — cloud-init's fingerprint table of the bootstrap user's authorized keys, the seed's hostname at the login
 * prompt, cloud-init finishing. (The seed carries the lab's public keys only, so nobody here can log in with them:
 * the console is the witness, as it is on a lab machine's first boot.)
 */
export async function bootSeedCheck(o: SeedBootOptions): Promise<BootReport> {
    const log = o.log ?? (() => undefined);
    fs.mkdirSync(o.workDir, { recursive: true });
    const scratch = fs.mkdtempSync(path.join(o.workDir, "seedboot-"));
    const consoleLog = o.consoleLog ?? path.join(o.workDir, `${o.name}-console.log`);
    try {
        const overlay = path.join(scratch, "overlay.qcow2");
        await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", path.resolve(o.baseImage), "-F", "qcow2", overlay]);
        const accelerators = o.accelerators ?? ["tcg"];
        const accel = accelerators[0];
        fs.rmSync(consoleLog, { force: true });
        const args = qemuX86Args({ accel, consoleLog,
            extra: ["-drive", `file=${overlay},if=virtio,format=qcow2`, "-drive", `file=${path.resolve(o.seedIso)},if=virtio,format=raw,readonly=on`] });
        log(`→ ${o.name}: booting ${path.basename(o.baseImage)} with the seed attached under ${accel.toUpperCase()}`);
        const qemuCommand = shellLine(["qemu-system-x86_64", ...args]);
        const qemu = execa("qemu-system-x86_64", args, { reject: false, all: true });
        const started = Date.now();
        const elapsed = () => (Date.now() - started) / 1000;
        const wanted: Array<{ id: string; re: RegExp; what: string }> = [
            { id: "seed-user", re: new RegExp(`Authorized keys from /home/${o.user}/\\.ssh/authorized_keys for user ${o.user}`), what: `cloud-init made ${o.user} with the seed's keys` },
            { id: "seed-hostname", re: new RegExp(`^${o.hostname} login:`, "m"), what: `the login prompt names ${o.hostname}` },
            { id: "cloud-init-finished", re: /Cloud-init v\. \S+ finished at/, what: "cloud-init finished" },
            ...o.authorizedKeys.map((k, i) => ({ id: `seed-key-${i + 1}`, re: new RegExp(ciFingerprint(k)), what: `the seed's key ${i + 1} (${k.trim().split(/\s+/)[2] ?? "no comment"}) is authorized` })),
        ];
        const seen = new Map<string, number>();
        let hang: GuestHang | undefined;
        try {
            const deadline = started + (o.timeoutSeconds ?? 600) * 1000;
            while (Date.now() < deadline && qemu.exitCode === null && seen.size < wanted.length && !hang) {
                await sleep(1000);
                const text = fs.existsSync(consoleLog) ? fs.readFileSync(consoleLog, "latin1").replace(/\r/g, "") : "";
                for (const w of wanted) if (!seen.has(w.id) && w.re.test(text)) seen.set(w.id, elapsed());
                hang = findGuestHang(text);
            }
        } finally {
            qemu.kill("SIGKILL");
            await qemu;
        }
        const checks = wanted.map((w) => ({ id: w.id, passed: seen.has(w.id), detail: seen.has(w.id) ? `${w.what} (after ${(seen.get(w.id) as number).toFixed(0)} s)` : `not on the console within ${elapsed().toFixed(0)} s: ${w.what}` }));
        if (hang) checks.push({ id: "guest-kernel", passed: false, detail: `${hang.kind} on the console after ${elapsed().toFixed(0)} s: ${hang.line}` });
        return { passed: checks.every((c) => c.passed), accelerator: accel, sshReadySeconds: 0, totalSeconds: elapsed(), checks, consoleLog, qemuCommand };
    } finally {
        fs.rmSync(scratch, { recursive: true, force: true });
    }
}

/** What a boot leaves in the validation evidence packet: the report as JSON and as text, and the whole console. */
export function bootEvidenceFiles(r: BootReport): Array<{ name: string; content: string }> {
    const ssh = r.sshReadySeconds > 0 ? `SSH after ${r.sshReadySeconds.toFixed(0)} s, ` : "";
    const text = [`boot under ${r.accelerator}: ${ssh}checks done after ${r.totalSeconds.toFixed(0)} s: ${r.passed ? "PASSED" : "FAILED"}`,
        ...r.checks.map((c) => `${c.passed ? "PASS" : "FAIL"} ${c.id}: ${c.detail}`)].join("\n");
    return [
        { name: "boot-report.json", content: `${JSON.stringify(r, null, 2)}\n` },
        { name: "boot-report.txt", content: `${text}\n` },
        { name: "console.log", content: fs.existsSync(r.consoleLog) ? fs.readFileSync(r.consoleLog, "latin1") : "" },
    ];
}
