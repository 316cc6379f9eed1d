// Boots an image under qemu with a NoCloud seed and runs commands in it over SSH, as a consumer would.
// KVM is used when /dev/kvm works; if the guest kernel does not start under KVM (nested virtualisation that
// accepts KVM_CREATE_VM but cannot run a guest), the boot is retried under TCG and the log says so.
import execa from "execa";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export interface BootResult {
    accel: "kvm" | "tcg";
    /** `cloud-init status` once it finished: "status: done" on a healthy first boot. */
    cloudInitStatus: string;
    /** Seconds from qemu start to the first successful SSH command. */
    sshReadySeconds: number;
    outputs: string[];
    serialLog: string;
}

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

function kvmUsable(): boolean {
    try {
        fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
        return true;
    } catch {
        return false;
    }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Set once a guest failed to start under KVM in this process: later boots go straight to TCG. */
let kvmBroken = false;

export async function bootAndRun(opts: {
    qcow2: string;
    user: string;
    privateKey: string;
    commands: string[];
    timeoutSeconds?: number;
    log?: (line: string) => void;
}): Promise<BootResult> {
    const log = opts.log ?? (() => undefined);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-boot-"));
    try {
        const overlay = path.join(dir, "overlay.qcow2");
        await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", path.resolve(opts.qcow2), "-F", "qcow2", overlay]);
        fs.writeFileSync(path.join(dir, "user-data"), "#cloud-config\n{}\n");
        fs.writeFileSync(path.join(dir, "meta-data"), `instance-id: boot-test-${Date.now()}\nlocal-hostname: boot-test\n`);
        const seed = path.join(dir, "seed.iso");
        await execa("cloud-localds", [seed, path.join(dir, "user-data"), path.join(dir, "meta-data")]);

        const attempts: Array<"kvm" | "tcg"> = kvmUsable() && !kvmBroken ? ["kvm", "tcg"] : ["tcg"];
        for (const accel of attempts) {
            const port = await freePort();
            const serial = path.join(dir, `serial-${accel}.log`);
            const args = ["-machine", "pc", "-m", "1024", "-smp", "2", "-display", "none", "-monitor", "none",
                "-serial", `file:${serial}`, "-accel", accel,
                "-drive", `file=${overlay},if=virtio,format=qcow2`, "-drive", `file=${seed},if=virtio,format=raw,readonly=on`,
                "-netdev", `user,id=n0,hostfwd=tcp:127.0.0.1:${port}-:22`, "-device", "virtio-net-pci,netdev=n0"];
            log(`boot: qemu-system-x86_64 ${args.join(" ")}`);
            const qemu = execa("qemu-system-x86_64", args, { reject: false });
            const started = Date.now();
            try {
                if (accel === "kvm") {
                    // The kernel prints its banner within seconds under KVM; silence means this KVM cannot run guests.
                    let up = false;
                    for (let i = 0; i < 40 && !up; i++) {
                        await sleep(500);
                        up = fs.existsSync(serial) && fs.readFileSync(serial, "latin1").includes("Linux version");
                        if (qemu.exitCode !== null) break;
                    }
                    if (!up) {
                        log("boot: the guest kernel did not start under KVM within 20s; retrying under TCG (software emulation, slower)");
                        kvmBroken = true;
                        qemu.kill("SIGKILL");
                        await qemu;
                        continue;
                    }
                }
                const deadline = started + (opts.timeoutSeconds ?? (accel === "kvm" ? 180 : 420)) * 1000;
                const sshArgs = ["-i", opts.privateKey, "-p", String(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", `${opts.user}@127.0.0.1`];
                let ready = -1;
                while (Date.now() < deadline && qemu.exitCode === null) {
                    const r = await execa("ssh", [...sshArgs, "true"], { reject: false, timeout: 15_000 });
                    if (r.exitCode === 0) {
                        ready = (Date.now() - started) / 1000;
                        break;
                    }
                    await sleep(2000);
                }
                if (ready < 0) {
                    const tail = fs.existsSync(serial) ? fs.readFileSync(serial, "latin1").slice(-3000) : "(no serial output)";
                    throw new Error(`no SSH login within the deadline under ${accel}; serial console tail:\n${tail}`);
                }
                // sshd answers before cloud-init is done; cloud-init then rotates host keys and restarts sshd. A consumer
                // (Ansible, Terraform) waits for cloud-init first; so do we. Exit 255 is ssh's own failure: retry it.
                const sshRun = async (c: string) => {
                    for (let attempt = 0; ; attempt++) {
                        const r = await execa("ssh", [...sshArgs, c], { reject: false, timeout: 300_000 });
                        if (r.exitCode !== 255 || attempt >= 5) return r;
                        await sleep(3000);
                    }
                };
                const wait = await sshRun("cloud-init status --wait >/dev/null; cloud-init status");
                log(`boot: ${wait.stdout.trim()} after ${((Date.now() - started) / 1000).toFixed(0)}s`);
                const outputs: string[] = [];
                for (const c of opts.commands) {
                    const r = await sshRun(c);
                    if (r.exitCode !== 0) throw new Error(`in the guest: ${c} exited ${r.exitCode}: ${r.stderr}`);
                    outputs.push(r.stdout);
                }
                return { accel, sshReadySeconds: ready, cloudInitStatus: wait.stdout.trim(), outputs, serialLog: fs.readFileSync(serial, "latin1") };
            } finally {
                if (qemu.exitCode === null) qemu.kill("SIGKILL");
                await qemu;
            }
        }
        throw new Error("could not boot the image under any accelerator");
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
