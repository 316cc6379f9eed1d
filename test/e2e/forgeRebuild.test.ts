// @slow, opt-in (IMAGE_FACTORY_FORGE_TEST=1): NFR-6, the forge rebuilds itself, proven as far as this machine allows.
// Builds the full builder-node image (Packer, every package and tool, the forge kit), boots it under qemu with a
// second disk holding what an offline operator would carry on a stick (a git bundle of HEAD and the npm cache setup
// filled), and inside it runs the README's "Rebuild the forge" steps: forge-install, make deps, and
// pulumi preview --stack local. Measured here under TCG: see the README's test table (the full node build is reused
// from builderNode's full run, same work directory and build key). test/integration/forgeInstall.test.ts runs the same
// script on this machine in CI.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { sleep } from "../../lib/backoff";
import { nocloudMetaData, nocloudUserData } from "../../lib/isoFormat";
import { loadRecipe } from "../../lib/recipe";
import { virtualisation } from "../../lib/stages/packer";
import { buildImage, type BuildResult } from "../../lib/stages/pipeline";
import { planBuild, withBase } from "../../lib/stages/plan";
import { freePort, guestSshArgs, qemuX86Args } from "../../lib/validation/bootCheck";
import { machineDebian } from "../helpers/debian";
import { LOCAL_KEY, TEST_WORK_DIR } from "../helpers/localStack";
import { CACHE_ROOT, REPO_ROOT } from "../helpers/setup";

const OPT_IN = process.env.IMAGE_FACTORY_FORGE_TEST === "1";

(OPT_IN ? describe : describe.skip)("the forge rebuilds itself inside a booted builder-node image (NFR-6) @slow", function () {
    this.timeout(120 * 60_000);
    // Nothing here runs when the suite is skipped: mocha still calls a skipped describe's body, and the build user
    // may not even run git in this checkout (CI's user phase).
    let scratch: string;
    let commit: string;
    const times: Record<string, number> = {};
    let node: BuildResult;
    let qemu: execa.ExecaChildProcess | undefined;
    let ssh: string[];
    const inGuest = (script: string, timeoutMin: number) =>
        execa("ssh", [...ssh, "bash", "-l", "-s"], { input: `set -e\n${script}\n`, reject: false, all: true, timeout: timeoutMin * 60_000 });
    const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
        const t0 = Date.now();
        try {
            return await f();
        } finally {
            times[name] = Math.round((Date.now() - t0) / 1000);
        }
    };

    before(async () => {
        scratch = fs.mkdtempSync(path.join(os.tmpdir(), "if-forge-vm-"));
        commit = (await execa("git", ["-c", `safe.directory=${REPO_ROOT}`, "rev-parse", "HEAD"], { cwd: REPO_ROOT })).stdout.trim();
        const key = fs.readFileSync(`${LOCAL_KEY}.pub`, "utf8").trim();
        const common = { projectDir: REPO_ROOT, workDir: path.join(TEST_WORK_DIR, "packer"), bootstrapUser: { name: "ansible", authorizedKeys: [key] }, domain: "lab.example", debian: machineDebian() };
        const minimal = planBuild({ ...common, recipe: loadRecipe("debian-12-minimal") });
        const base = await buildImage({ ...minimal.request, version: "v2026.01.01", buildInfo: { ...minimal.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } });
        const plan = planBuild({ ...common, recipe: loadRecipe("builder-node"), base: { id: "image:debian-12-minimal", version: "this-stack", identity: base.buildKey } });
        node = await timed("builder-node build", () => buildImage({ ...withBase(plan.request, { path: base.path, sha256: base.sha256 }), version: "v2026.01.01",
            buildInfo: { ...plan.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } }));
        if (node.reused) times["builder-node build"] = 0;

        // The operator's stick: the factory as a bundle and an npm cache, on an ISO labelled FORGEKIT.
        const kit = path.join(scratch, "kit");
        fs.mkdirSync(kit);
        await execa("git", ["-c", `safe.directory=${REPO_ROOT}`, "bundle", "create", path.join(kit, "factory.bundle"), "HEAD"], { cwd: REPO_ROOT });
        fs.cpSync(path.join(CACHE_ROOT, "npm"), path.join(kit, "npm"), { recursive: true });
        await execa("xorriso", ["-as", "mkisofs", "-quiet", "-o", path.join(scratch, "kit.iso"), "-V", "FORGEKIT", "-J", "-joliet-long", "-r", kit]);

        // A new node: a copy-on-write disk over the image with room to grow, and a seed with this test's key.
        const overlay = path.join(scratch, "node.qcow2");
        const size = JSON.parse((await execa("qemu-img", ["info", "--output=json", node.path])).stdout) as { "virtual-size": number };
        await execa("qemu-img", ["create", "-q", "-f", "qcow2", "-b", node.path, "-F", "qcow2", overlay, String(size["virtual-size"] + 4 * 2 ** 30)]);
        const sshKey = path.join(scratch, "id_ed25519");
        await execa("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", sshKey]);
        const seed = path.join(scratch, "seed");
        fs.mkdirSync(seed);
        fs.writeFileSync(path.join(seed, "user-data"), nocloudUserData({ hostname: "forge", domain: "lab.example", user: { name: "ansible", authorizedKeys: [fs.readFileSync(`${sshKey}.pub`, "utf8").trim()] } }));
        fs.writeFileSync(path.join(seed, "meta-data"), nocloudMetaData({ name: "forge", hostname: "forge", buildKey: node.buildKey }));
        await execa("xorriso", ["-as", "mkisofs", "-quiet", "-o", path.join(scratch, "seed.iso"), "-V", "cidata", "-J", "-r", seed]);
        const port = await freePort();
        const accel = virtualisation(REPO_ROOT).accel;
        qemu = execa("qemu-system-x86_64", qemuX86Args({ accel, consoleLog: path.join(scratch, "console.log"), sshPort: port, memoryMiB: 2048, extra: [
            "-drive", `file=${overlay},if=virtio,format=qcow2`,
            "-drive", `file=${path.join(scratch, "seed.iso")},if=virtio,format=raw,readonly=on`,
            "-drive", `file=${path.join(scratch, "kit.iso")},if=virtio,format=raw,readonly=on`] }), { reject: false, all: true });
        ssh = guestSshArgs(sshKey, port, "ansible");
        await timed("boot to SSH", async () => {
            for (const end = Date.now() + 20 * 60_000; ; await sleep(3000)) {
                if (qemu?.exitCode !== null) throw new Error(`qemu exited: ${(qemu as unknown as { all?: string }).all ?? ""}`);
                if ((await execa("ssh", [...ssh, "cloud-init", "status", "--wait"], { reject: false, timeout: 600_000 })).exitCode === 0) return;
                if (Date.now() > end) throw new Error(`no SSH within 20 minutes; console: ${path.join(scratch, "console.log")}`);
            }
        });
    });
    after(async () => {
        if (ssh) await execa("ssh", [...ssh, "sudo", "-n", "poweroff"], { reject: false, timeout: 15_000 });
        if (qemu && qemu.exitCode === null) {
            await Promise.race([qemu, sleep(10_000)]);
            if (qemu.exitCode === null) qemu.kill("SIGKILL");
        }
        console.log(`      times (s): ${JSON.stringify(times)}`);
        if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    });

    it("forge-install puts the factory at the commit on the node from the stick, offline, and ends with make deps passing", async () => {
        const r = await timed("forge-install", () => inGuest(`sudo mount -o ro LABEL=FORGEKIT /mnt\nforge-install --npm-cache /mnt/npm /mnt/factory.bundle ${commit}`, 60));
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.all ?? "", new RegExp(`forge-install: checkout at ${commit}`));
        assert.match(r.all ?? "", /^deps: all required tools present$/m);
    });

    it("make deps passes in the checkout, every tool from the image", async () => {
        const r = await timed("make deps", () => inGuest("cd /srv/image-factory/src && make deps && command -v pulumi packer oras node npm", 20));
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.all ?? "", /^deps: all required tools present$/m);
        assert.match(r.all ?? "", /^\/opt\/image-factory\/bin\/pulumi$/m);
        assert.match(r.all ?? "", /^\/opt\/image-factory\/bin\/npm$/m);
    });

    it("pulumi preview --stack local runs on the node", async () => {
        const r = await timed("pulumi preview", () => inGuest(["cd /srv/image-factory/src", "source scripts/env.sh", "export PULUMI_CONFIG_PASSPHRASE=image-factory-local",
            "pulumi stack select --create local >/dev/null", "pulumi preview --stack local"].join("\n"), 60));
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.all ?? "", /image-factory:image:Image\s+debian-12-minimal/);
        assert.match(r.all ?? "", /Resources:\s+\+ \d+ to create/);
    });
});
