// The machine every VM of ours gets, and the console watch that ends a wait on a stuck guest (issue 32), without a
// VM: kernel lines as the kernel prints them, a console file written while it is watched, a command stopped.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { findGuestHang, GuestHangError, guestMachineArgs, shellLine, TCG_CPUS, unlessGuestHangs, watchConsole } from "../../lib/guestVm";
import { qemuX86Args } from "../../lib/validation/bootCheck";
import { qemuVariables } from "../../lib/stages/packer";
import { run } from "../../lib/exec";
import { waitFor } from "../helpers/waitFor";

// The lines of the report that opened issue 32, and the other two signs, as Debian 12's kernel prints them.
const LOCKUP = "[   62.108417] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [cloud-init:218]";
const RCU = "[   88.312000] rcu: INFO: rcu_preempt self-detected stall on CPU";
const PANIC = "[    3.120000] Kernel panic - not syncing: sysrq triggered crash";

describe("lib/guestVm: what every VM gets, and a stuck guest seen on its console", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-guestvm-"));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("under TCG: -cpu max, the vCPU bound, and virtio-rng from the host's /dev/urandom; under KVM: -cpu host and the recipe's count", () => {
        const tcg = guestMachineArgs("tcg", 4);
        assert.deepEqual(tcg, ["-cpu", "max", "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0", "-smp", String(TCG_CPUS)]);
        assert.deepEqual(guestMachineArgs("kvm", 4).filter((_, i, a) => a[i - 1] === "-cpu" || a[i - 1] === "-smp"), ["host", "4"]);
        // The boot gate's machine carries them, once each.
        const args = qemuX86Args({ accel: "tcg", consoleLog: "/w/c.log", sshPort: 2222, extra: [] });
        for (const flag of ["-cpu", "-smp", "-object"]) assert.equal(args.filter((a) => a === flag).length, 1, flag);
        assert.ok(args.includes("virtio-rng-pci,rng=rng0"));
    });

    it("Packer's VM gets the same CPU model and entropy device, as qemuargs pairs, and the bounded vCPU count", () => {
        const vars = qemuVariables({
            name: "n", hostname: "n", domain: "d", imageDir: "/i", template: "/i/image.pkr.hcl", user: { name: "ansible", authorizedKeys: [] },
            base: { id: "b", version: "1", sha256: "e".repeat(64), path: "/b.qcow2" }, diskSize: "8G", memoryMiB: 2048, cpus: 8, vars: {},
            ansibleRolesPath: [], ansibleCollectionsPath: [], projectDir: "/p", sourceDateEpoch: 1, buildKey: "k", buildInfo: {},
        }, "/work", "tcg", "/builds/n/k/serial.log");
        assert.deepEqual(vars.qemu_machine_args, [["-cpu", "max"], ["-object", "rng-random,id=rng0,filename=/dev/urandom"], ["-device", "virtio-rng-pci,rng=rng0"]]);
        assert.equal(vars.cpus, TCG_CPUS);
        assert.equal(vars.serial_log, "/builds/n/k/serial.log", "the console is kept beside the build log, not in the work directory");
        const template = fs.readFileSync(path.join(__dirname, "../../images/builder-node/image.pkr.hcl"), "utf8");
        assert.match(template, /qemuargs\s*=\s*concat\(\[\["-serial", "file:\$\{var\.serial_log\}"\]\], var\.qemu_machine_args\)/);
    });

    it("finds a soft lockup, an RCU stall and a panic by the kernel's own words, and nothing in a normal boot", () => {
        assert.deepEqual(findGuestHang(`a\r\n${LOCKUP}\r\nb`), { kind: "soft lockup", line: LOCKUP });
        assert.deepEqual(findGuestHang(`${RCU}\n`), { kind: "RCU stall", line: RCU });
        assert.equal(findGuestHang("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:\n")?.kind, "RCU stall");
        assert.deepEqual(findGuestHang(`${PANIC}\n`), { kind: "kernel panic", line: PANIC });
        assert.equal(findGuestHang(`x\n${RCU}\n${LOCKUP}\n`)?.kind, "RCU stall", "the first sign on the console is named");
        const normal = "[    0.000000] Linux version 6.1.0-57-cloud-amd64\n[    1.2] random: crng init done\n[  OK  ] Started ssh.service\nrcu: Hierarchical RCU implementation.\n";
        assert.equal(findGuestHang(normal), undefined);
    });

    it("watches a console as it is written: a sign split across two writes is seen, a truncated file is read again", async () => {
        const file = path.join(dir, "console.log");
        const w = watchConsole(file, 50);
        try {
            await new Promise((r) => setTimeout(r, 120)); // the file does not exist yet: no error, no hang
            fs.writeFileSync(file, "[    0.0] Linux version 6.1\n[   62.1] watchdog: BUG: soft lo");
            await new Promise((r) => setTimeout(r, 150));
            assert.equal(w.seen, undefined);
            fs.appendFileSync(file, "ckup - CPU#0 stuck for 22s! [cloud-init:218]\n");
            const hang = await Promise.race([w.hung, new Promise<undefined>((r) => setTimeout(r, 3000, undefined))]);
            assert.deepEqual(hang, { kind: "soft lockup", line: "[   62.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [cloud-init:218]" });
        } finally {
            w.stop();
        }
        fs.writeFileSync(file, `${"[    1.0] an earlier boot's line\n".repeat(20)}`);
        const again = watchConsole(file, 50);
        try {
            await new Promise((r) => setTimeout(r, 150));
            fs.writeFileSync(file, "x".repeat(10) + "\n"); // qemu truncates its console at start
            await new Promise((r) => setTimeout(r, 150));
            fs.appendFileSync(file, `${PANIC}\n`);
            await waitFor("the panic written after a truncation", () => again.seen !== undefined, 3000);
            assert.equal(again.seen?.kind, "kernel panic");
        } finally {
            again.stop();
        }
    });

    it("a hang stops the wait at once: the VM is stopped, and the error names the sign, accelerator, qemu's command line and the console", async () => {
        const file = path.join(dir, "hang-console.log");
        fs.writeFileSync(file, Array.from({ length: 40 }, (_, i) => `boot line ${i}`).join("\n") + "\n");
        const w = watchConsole(file, 50);
        const stop = new AbortController();
        const t0 = Date.now();
        // A command that would run for 60 s stands in for Packer waiting for SSH.
        const work = run("sleep", ["60"], { abort: stop.signal });
        setTimeout(() => fs.appendFileSync(file, `${LOCKUP}\n`), 200);
        const qemu = ["qemu-system-x86_64", "-machine", "type=pc,accel=tcg", "-serial", `file:${file}`, "-append", "console=ttyS0 quiet"];
        await assert.rejects(unlessGuestHangs(work, w, async (hang) => {
            stop.abort();
            return new GuestHangError("builder-node: packer build", hang, "tcg", shellLine(qemu), file, (Date.now() - t0) / 1000);
        }), (e: Error) => {
            assert.ok(e instanceof GuestHangError);
            assert.match(e.message, /^builder-node: packer build: the guest kernel reported a soft lockup under TCG after \d+ s/);
            assert.ok(e.message.includes(LOCKUP));
            assert.ok(e.message.includes(`qemu: qemu-system-x86_64 -machine type=pc,accel=tcg -serial file:${file} -append 'console=ttyS0 quiet'`));
            assert.match(e.message, /boot line 39\n/);
            assert.match(e.message, /give this machine KVM/);
            return true;
        });
        assert.ok(Date.now() - t0 < 10_000, `stopped after ${Date.now() - t0} ms, not after the command's 60 s`);
        w.stop();
    });

    it("a command stopped through abort fails saying so, and is gone", async () => {
        const stop = new AbortController();
        const p = run("sh", ["-c", "echo started; exec sleep 30"], { abort: stop.signal });
        setTimeout(() => stop.abort(), 300);
        const t0 = Date.now();
        await assert.rejects(p, /sh -c "echo started; exec sleep 30" failed[\s\S]*stopped by the factory before it finished/);
        assert.ok(Date.now() - t0 < 5000);
    });
});
