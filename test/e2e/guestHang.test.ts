// @slow (issue 32): a guest kernel that dies under us ends the wait at once and explains itself. Real VMs under the
// machine's accelerator: the boot gate's VM and Packer's VM each get a real kernel panic (sysrq "c", as root in the
// guest) in the middle of their work. Without the console watch the boot gate would wait out its SSH timeout and
// Packer its 30-minute ssh_timeout; with it, each stops seconds after the panic with the console, the accelerator and
// qemu's command line, and the console log stays beside the build log.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { findGuestHang, GuestHangError, qemuProcessOf, watchConsole } from "../../lib/guestVm";
import { bootCheck, bootFailure } from "../../lib/validation/bootCheck";
import { buildImage, buildDirOf, type BuildResult } from "../../lib/stages/pipeline";
import { planBuild, withBase } from "../../lib/stages/plan";
import { loadRecipe } from "../../lib/recipe";
import { requestFor } from "../helpers/requests";
import { LOCAL_KEY, TEST_WORK_DIR } from "../helpers/localStack";
import { REPO_ROOT } from "../helpers/setup";
import { machineDebian } from "../helpers/debian";
import { smallBuilderNode } from "../helpers/builderNode";

const FIXTURES = path.join(REPO_ROOT, "test/fixtures/guest-crash");

describe("a guest that hangs or panics stops the wait at once (issue 32) @slow", function () {
    this.timeout(30 * 60_000);
    const key = fs.readFileSync(`${LOCAL_KEY}.pub`, "utf8").trim();
    // The builder-node test's work dir: its debian-12-minimal build (same key) is reused, not built twice.
    const common = { projectDir: REPO_ROOT, workDir: path.join(TEST_WORK_DIR, "packer"), bootstrapUser: { name: "ansible", authorizedKeys: [key] }, domain: "lab.example", debian: machineDebian() };
    let base: BuildResult;
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "if-hang-"));

    before(async () => {
        const minimal = planBuild({ ...common, recipe: loadRecipe("debian-12-minimal") });
        base = await buildImage({ ...minimal.request, version: "v2026.01.01", buildInfo: { ...minimal.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } });
    });
    after(() => fs.rmSync(scratch, { recursive: true, force: true }));

    /**
     * When the console first shows the panic (the test's own watch, 200 ms), to time how soon the wait ended. When the
     * code under test saw the panic and ended between two polls of ours (seen in CI, under load), the console's last
     * write stands for it: a panicked guest writes nothing after its trace, so a wait that ran on for minutes still
     * shows as minutes.
     */
    function panicSeenAt(consoleLog: string): { at: () => number | undefined; stop: () => void } {
        const w = watchConsole(consoleLog, 200);
        let at: number | undefined;
        void w.hung.then(() => { at = Date.now(); });
        const lastWrite = () => (fs.existsSync(consoleLog) && findGuestHang(fs.readFileSync(consoleLog, "latin1")) ? fs.statSync(consoleLog).mtimeMs : undefined);
        return { at: () => at ?? lastWrite(), stop: () => w.stop() };
    }

    it("the boot gate: a panic during the recipe's smoke checks fails the boot within seconds, naming the panic, the accelerator and qemu's command", async () => {
        const consoleLog = path.join(scratch, "boot-console.log");
        const seen = panicSeenAt(consoleLog);
        let r;
        try {
            r = await bootCheck({ image: base.path, name: "debian-12-minimal", user: "ansible", hostname: "hang-check", workDir: scratch, consoleLog,
                smokeScript: path.join(FIXTURES, "smoke.sh"), log: (l) => console.log(`      ${l}`) });
        } finally {
            seen.stop();
        }
        const ended = Date.now();
        assert.equal(r.passed, false);
        const gk = r.checks.find((c) => c.id === "guest-kernel");
        assert.ok(gk && !gk.passed, JSON.stringify(r.checks));
        assert.match(gk.detail, /^kernel panic on the console after \d+ s: .*Kernel panic - not syncing: sysrq triggered crash/);
        // The common checks ran before the recipe's script crashed the guest, and they are kept in the report.
        assert.ok(r.checks.some((c) => c.id === "cloud-init" && c.passed), JSON.stringify(r.checks));
        assert.match(r.qemuCommand ?? "", new RegExp(`^qemu-system-x86_64 .*-cpu ${r.accelerator === "kvm" ? "host" : "max"} .*virtio-rng-pci`));
        const panicAt = seen.at();
        assert.ok(panicAt !== undefined, "the console shows the panic");
        console.log(`      boot gate (${r.accelerator}): SSH after ${r.sshReadySeconds.toFixed(0)} s; the wait ended ${((ended - panicAt) / 1000).toFixed(1)} s after the panic reached the console`);
        assert.ok(ended - panicAt < 15_000, `the boot check ended ${ended - panicAt} ms after the panic, not at once (the smoke script's own timeout is 300 s)`);
        const msg = bootFailure("debian-12-minimal", "v2026.01.01", r).message;
        assert.match(msg, /failed under (TCG|KVM)/);
        assert.match(msg, /FAIL guest-kernel: kernel panic/);
        assert.match(msg, /\nqemu: qemu-system-x86_64 .*-serial file:/);
        assert.match(msg, /sysrq triggered crash/);
        assert.ok(fs.existsSync(consoleLog), "the console log is kept");
    });

    it("Packer: a panic while Ansible provisions ends `packer build` at once; the console stays beside the build log; no VM is left running", async () => {
        const recipe = loadRecipe("builder-node");
        const small = smallBuilderNode(recipe);
        const plan = planBuild({ ...common, recipe: small, base: { id: "image:debian-12-minimal", version: "this-stack", identity: base.buildKey } });
        const req = requestFor(withBase(plan.request, { path: base.path, sha256: base.sha256 }), "packer");
        // A key of its own each run: this build must really run (and fail), never be found in the cache.
        const buildKey = crypto.randomBytes(32).toString("hex");
        const dir = buildDirOf(req.buildsDir, req.name, buildKey);
        const serialLog = path.join(dir, "serial.log");
        const seen = panicSeenAt(serialLog);
        const t0 = Date.now();
        let err: unknown;
        try {
            await buildImage({ ...req, buildKey, packer: { ...req.packer, playbook: path.join(FIXTURES, "playbook.yml") }, version: "v2026.01.01",
                buildInfo: { ...req.buildInfo, buildTime: "2026-01-01T00:00:00Z" } }, (l) => console.log(`      ${l}`));
        } catch (e) {
            err = e;
        } finally {
            seen.stop();
        }
        const ended = Date.now();
        try {
            assert.ok(err instanceof GuestHangError, `expected the build to stop on the panic, got: ${err === undefined ? "success" : (err as Error).message}`);
            const panicAt = seen.at();
            assert.ok(panicAt !== undefined, "the console shows the panic");
            console.log(`      packer build: failed after ${((ended - t0) / 1000).toFixed(0)} s, ${((ended - panicAt) / 1000).toFixed(1)} s after the panic reached the console`);
            assert.ok(ended - panicAt < 20_000, `the build ended ${ended - panicAt} ms after the panic: Packer's ssh_timeout is 30 min`);
            assert.match(err.message, /^builder-node: packer build: the guest kernel reported a kernel panic under (TCG|KVM) after \d+ s/);
            assert.match(err.message, /Kernel panic - not syncing: sysrq triggered crash/);
            // Packer assembles qemu's arguments from a map, so their order differs run to run (seen in CI: the
            // rng device came before -cpu once): each is looked for on the qemu line on its own.
            const qemuLine = /\nqemu: (\S*qemu-system-x86_64 .*)/.exec(err.message)?.[1] ?? "";
            assert.match(qemuLine, / -cpu (max|host)( |$)/, err.message);
            assert.match(qemuLine, / -device virtio-rng-pci,rng=rng0( |$)/, err.message);
            assert.match(qemuLine, / -object rng-random,id=rng0,filename=\/dev\/urandom( |$)/, err.message);
            assert.ok(err.message.includes(`console (${serialLog}, kept)`));
            assert.match(err.message, /\(full build log: .*build\.log\)$/);
            // Kept beside the build log after the work directory went.
            assert.match(fs.readFileSync(serialLog, "latin1"), /sysrq triggered crash/);
            assert.ok(fs.existsSync(path.join(dir, "build.log")));
            assert.equal(fs.existsSync(path.join(dir, "work")), false, "the work directory is removed");
            assert.equal(fs.existsSync(path.join(dir, "result.json")), false, "nothing is marked built");
            assert.equal(qemuProcessOf(serialLog), undefined, "the crashed VM is not left running");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
