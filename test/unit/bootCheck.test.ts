// The boot gate's smoke script and its report, without a boot: the script is valid sh, every check prints its line,
// a check that printed nothing (the session ended) counts as failed, and a failure message names what an operator needs.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { bootFailure, COMMON_CHECKS, guestSshArgs, parseSmoke, qemuX86Args, smokeScript } from "../../lib/validation/bootCheck";

describe("lib/bootCheck: smoke script and report", () => {
    const script = smokeScript({ user: "ansible", hostname: "boot-x", minRootBytes: 1 });

    it("is a valid POSIX sh script with one check per common check id", async () => {
        await execa("sh", ["-n"], { input: script });
        for (const id of COMMON_CHECKS) assert.match(script, new RegExp(`^ck ${id} `, "m"), id);
    });

    it("run here (not the image), prints a CHECK line for every check and fails the ones this host does not meet", async () => {
        // This machine is no booted image: its hostname and user differ, so those two checks must fail, visibly.
        const r = await execa("sh", ["-s"], { input: script.replace("cloud-init status --wait", "echo status: done; true"), reject: false, timeout: 60_000 });
        const checks = parseSmoke(r.stdout, COMMON_CHECKS);
        assert.deepEqual(checks.map((c) => c.id).sort(), [...COMMON_CHECKS].sort());
        assert.equal(checks.find((c) => c.id === "hostname")?.passed, false);
        assert.equal(checks.find((c) => c.id === "bootstrap-user")?.passed, os.userInfo().username === "ansible");
        assert.equal(checks.find((c) => c.id === "cloud-init")?.passed, true);
    });

    it("a check without a line failed: the session ended before it", () => {
        const checks = parseSmoke("CHECK cloud-init ok status: done\nCHECK sudo fail sudo: a password is required\n", ["cloud-init", "sudo", "python3"]);
        assert.deepEqual(checks.map((c) => [c.id, c.passed]), [["cloud-init", true], ["sudo", false], ["python3", false]]);
        assert.match(checks[2].detail, /no result/);
    });

    it("a failure names the image, version, accelerator, each failed check and the console's last lines", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-bootfail-"));
        try {
            const consoleLog = path.join(dir, "console.log");
            fs.writeFileSync(consoleLog, `${Array.from({ length: 60 }, (_, i) => `line ${i}`).join("\r\n")}\r\n[FAILED] Failed to start ssh.service\r\n`);
            const e = bootFailure("img", "v2026.01.01", {
                passed: false, accelerator: "tcg", sshReadySeconds: 40, totalSeconds: 61.4, consoleLog,
                checks: [{ id: "ssh-login", passed: true, detail: "" }, { id: "system-running", passed: false, detail: "degraded ssh.service failed" }],
            });
            assert.match(e.message, /^boot check of img v2026\.01\.01 failed under TCG after 61 s:\n {2}FAIL system-running: degraded ssh\.service failed\n/);
            assert.doesNotMatch(e.message, /FAIL ssh-login/);
            assert.match(e.message, /\[FAILED\] Failed to start ssh\.service\nThe image is not published\.$/);
            assert.doesNotMatch(e.message, /line 10\n/, "only the last lines");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("boots one headless x86 machine shape: serial console to a file, SSH forwarded only when asked", () => {
        assert.deepEqual(qemuX86Args({ accel: "tcg", consoleLog: "/w/c.log", sshPort: 2222, extra: ["-drive", "file=/w/o.qcow2,if=virtio,format=qcow2"] }), [
            "-machine", "pc", "-m", "1024", "-smp", "2", "-display", "none", "-monitor", "none", "-serial", "file:/w/c.log", "-accel", "tcg",
            "-drive", "file=/w/o.qcow2,if=virtio,format=qcow2", "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22", "-device", "virtio-net-pci,netdev=n0"]);
        assert.deepEqual(qemuX86Args({ accel: "kvm", consoleLog: "/w/c.log", extra: [] }).slice(-4), ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]);
        assert.deepEqual(guestSshArgs("/k", 2222, "ansible"), ["-i", "/k", "-p", "2222", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "ansible@127.0.0.1"]);
    });
});
