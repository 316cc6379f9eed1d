// @slow (first run ~3 min for the cached base fixture, then ~N min per build): the sdr-pi recipe is built by the
// Pi builder from a Raspberry Pi OS-shaped arm64 image, through the same pipeline as every image (build key,
// one sha256, validation), and the result's files are checked offline: nothing is booted.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SSH_HOST_KEYS_UNIT, sshHostKeysUnit } from "../../lib/stages/pi";
import { buildImage, type BuildResult } from "../../lib/stages/pipeline";
import { planBuild, withBase } from "../../lib/stages/plan";
import { OfflineImage } from "../../lib/validation/inspect";
import { loadRecipe } from "../../lib/recipe";
import { hashFile } from "../../lib/sha256";
import { validateArtifact } from "../../lib/validation/validateArtifact";
import { piBaseImage } from "../helpers/piBase";
import { REPO_ROOT } from "../helpers/setup";
import { TEST_WORK_DIR } from "../helpers/localStack";
import { machineDebian } from "../helpers/debian";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHGzTF6C3nC4e3Nq2yLvG0yv3h2mmkm1oAuKZb7JXvXq pi-test";

/** A Pi image's build plan on the fixture base (the same each time it is asked: the key is content-addressed). */
async function piPlan(image = "sdr-pi") {
    const base = await piBaseImage();
    const plan = planBuild({
        recipe: loadRecipe(image), projectDir: REPO_ROOT, workDir: path.join(TEST_WORK_DIR, "pi"),
        bootstrapUser: { name: "ansible", authorizedKeys: [KEY] }, domain: "test.internal",
        debian: machineDebian(),
        base: { id: "raspios-fixture", version: "test", identity: base.sha256 },
    });
    return { base, plan };
}

describe("PiImage builder (FR-4) @slow", function () {
    this.timeout(40 * 60_000);
    let result: BuildResult;
    let raw: string;
    let img: OfflineImage;
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "if-pi-"));
    const lines: string[] = [];

    before(async () => {
        const { base, plan } = await piPlan();
        result = await buildImage({ ...withBase(plan.request, base), version: "v2026.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } },
            (m) => lines.push(m));
        raw = path.join(work, "sdr-pi.img");
        await execa("sh", ["-c", `xz -dc "${result.path}" > "${raw}"`]);
        img = await OfflineImage.open(raw, { tmpDir: work });
    });
    after(() => {
        img?.close();
        fs.rmSync(work, { recursive: true, force: true });
    });

    it("publishes a flashable .img.xz whose sha256 is the one recorded, hashed once", async () => {
        assert.equal(result.format, "img.xz");
        assert.ok(result.path.endsWith("/sdr-pi.img.xz"));
        assert.equal((await hashFile(result.path)).sha256, result.sha256);
        assert.equal(fs.readFileSync(result.path).subarray(0, 6).toString("latin1"), "\xfd7zXZ\x00");
        assert.equal(result.virtualSize, fs.statSync(raw).size);
    });

    it("passes the validation gate (cloud-init checks reported not applicable, every other check passing)", async () => {
        const r = await validateArtifact(result.path, { image: "sdr-pi", version: result.version, bootstrapUser: "ansible", buildInfo: { buildKey: result.buildKey } });
        assert.ok(r.passed, JSON.stringify(r.checks, null, 1));
        assert.deepEqual(r.checks.filter((c) => c.status === "skip").map((c) => c.id), ["cloud-init.installed", "cloud-init.enabled"]);
        for (const id of ["sshd.password-authentication", "sshd.permit-root-login", "sudo.bootstrap-user", "python3.present", "manifest.present", "build-info.matches"]) {
            assert.equal(r.checks.find((c) => c.id === id)?.status, "pass", id);
        }
    });

    it("the root file system carries the SDR role's files, the bootstrap user and arm64 packages", async () => {
        assert.match(await img.readFile("/etc/modprobe.d/blacklist-rtl-sdr.conf") ?? "", /^blacklist dvb_usb_rtl28xxu$/m);
        assert.match(await img.readFile("/etc/udev/rules.d/20-rtl-sdr.rules") ?? "", /idProduct}=="2838", GROUP="plugdev"/);
        assert.equal((await img.readFile("/home/ansible/.ssh/authorized_keys"))?.trim(), KEY);
        assert.match(await img.readFile("/etc/group") ?? "", /^plugdev:x:\d+:.*\bansible\b/m);
        assert.match(await img.readFile("/etc/hostname") ?? "", /^sdr-pi$/m);
        const manifest = await img.readFile("/etc/image-factory/pkg-manifest.txt") ?? "";
        assert.match(manifest, /^rtl-sdr\t\S+\tarm64$/m, "rtl-sdr installed from the arm64 archive inside the image");
        assert.match(manifest, /^openssh-server\t\S+\tarm64$/m);
        const info = JSON.parse(await img.readFile("/etc/image-factory/build.json") ?? "{}") as { base: { id: string; sha256: string }; buildKey: string; kind: string };
        assert.equal(info.kind, "pi");
        assert.equal(info.buildKey, result.buildKey);
        assert.equal(info.base.id, "raspios-fixture");
        assert.equal(await img.readFile("/etc/machine-id"), "", "machine identity is generated on first boot");
        assert.equal(await img.exists("/etc/resolv.conf.image-factory"), false, "the build's resolv.conf is gone");
        // No host keys in the image (each device makes its own), and a unit that makes them before sshd starts.
        assert.deepEqual((await img.list("/etc/ssh"))?.filter((f) => f.startsWith("ssh_host_")), []);
        assert.equal(await img.readFile(SSH_HOST_KEYS_UNIT), sshHostKeysUnit());
        assert.equal(await img.resolve(`/etc/systemd/system/multi-user.target.wants/${path.basename(SSH_HOST_KEYS_UNIT)}`), SSH_HOST_KEYS_UNIT, "enabled");
    });

    it("the FAT boot partition has the SSH flag and the SDR boot settings (read with mtools, no mount)", async () => {
        const { stdout } = await execa("sfdisk", ["--json", raw]);
        const boot = (JSON.parse(stdout) as { partitiontable: { partitions: Array<{ start: number }> } }).partitiontable.partitions[0];
        const env = { MTOOLS_SKIP_CHECK: "1" };
        const config = (await execa("mtype", ["-i", `${raw}@@${boot.start * 512}`, "::/config.txt"], { env })).stdout;
        for (const line of ["enable_uart=1", "dtparam=spi=on", "dtparam=i2c_arm=on", "arm_64bit=1"]) assert.match(config, new RegExp(`^${line}$`, "m"), line);
        const dir = (await execa("mdir", ["-b", "-i", `${raw}@@${boot.start * 512}`, "::/"], { env })).stdout;
        assert.match(dir, /^::\/ssh$/m);
    });

    // The build log is kept next to the artifact, so these hold also when an earlier run's build was reused.
    it("provisioning converged: the playbook's second run changed nothing (NFR-2)", () => {
        assert.match(fs.readFileSync(result.logPath, "utf8"), /playbook\.yml converged: first run changed [1-9]\d*, second run changed 0/);
    });

    it("reports each stage with its elapsed time, and a second build of the same key is a cache hit", async () => {
        assert.match(fs.readFileSync(result.logPath, "utf8"), /\[1\/7\] copy .* done in/);
        if (!result.reused) assert.ok(lines.some((l) => /\[4\/7\] ansible-playbook .* done in/.test(l)), "progress reaches the caller");
        const again: string[] = [];
        const { base, plan } = await piPlan();
        assert.equal(plan.buildKey, result.buildKey);
        const r2 = await buildImage({ ...withBase(plan.request, base), version: "v2026.01.01", buildInfo: plan.request.buildInfo }, (m) => again.push(m));
        assert.equal(r2.reused, true);
        assert.equal(r2.sha256, result.sha256);
    });
});

// Issue 36: the other Pi image, from the same stand-in base, through the same builder, with its own role's checks.
describe("PiImage builder: music-detector-pi (FR-4) @slow", function () {
    this.timeout(40 * 60_000);
    let result: BuildResult;
    let raw: string;
    let img: OfflineImage;
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "if-pi-md-"));

    before(async () => {
        const { base, plan } = await piPlan("music-detector-pi");
        result = await buildImage({ ...withBase(plan.request, base), version: "v2026.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } });
        raw = path.join(work, "music-detector-pi.img");
        await execa("sh", ["-c", 'xz -dc -- "$1" > "$2"', "sh", result.path, raw]);
        img = await OfflineImage.open(raw, { tmpDir: work });
    });
    after(() => {
        img?.close();
        fs.rmSync(work, { recursive: true, force: true });
    });

    it("passes the validation gate, like every Pi image (cloud-init not applicable)", async () => {
        const r = await validateArtifact(result.path, { image: "music-detector-pi", version: result.version, bootstrapUser: "ansible", buildInfo: { buildKey: result.buildKey } });
        assert.ok(r.passed, JSON.stringify(r.checks, null, 1));
        assert.deepEqual(r.checks.filter((c) => c.status === "skip").map((c) => c.id), ["cloud-init.installed", "cloud-init.enabled"]);
    });

    it("carries the detector role: ALSA, its recording account, its directories, configuration and enabled service", async () => {
        const manifest = await img.readFile("/etc/image-factory/pkg-manifest.txt") ?? "";
        assert.match(manifest, /^alsa-utils\t\S+\tarm64$/m, "alsa-utils from the arm64 archive inside the image");
        const account = /^music-detector:x:(\d+):(\d+):[^:]*:[^:]*:(\S+)$/m.exec(await img.readFile("/etc/passwd") ?? "");
        assert.ok(account, "the detector's account");
        assert.ok(Number(account[1]) < 1000, "a system account");
        assert.equal(account[3], "/usr/sbin/nologin");
        assert.match(await img.readFile("/etc/group") ?? "", /^audio:x:\d+:.*\bmusic-detector\b/m, "allowed to record");
        for (const d of ["/opt/music-detector", "/var/lib/music-detector"]) assert.equal((await img.stat(d))?.type, "directory", d);
        assert.equal(await img.readFile("/etc/music-detector.conf"),
            "# Managed by image-factory (ansible/roles/pi_music_detector)\ndevice=default\nthreshold_db=-30\nreport_url=\n");
        const unit = await img.readFile("/etc/systemd/system/music-detector.service") ?? "";
        assert.match(unit, /^User=music-detector$/m);
        assert.match(unit, /^ExecStart=\/opt\/music-detector\/detect$/m);
        assert.equal(await img.resolve("/etc/systemd/system/multi-user.target.wants/music-detector.service"), "/etc/systemd/system/music-detector.service", "enabled");
        assert.match(await img.readFile("/etc/hostname") ?? "", /^music-detector$/m);
        assert.equal((await img.readFile("/home/ansible/.ssh/authorized_keys"))?.trim(), KEY);
    });

    it("its boot partition keeps one dtparam=audio=on line and gets the SSH flag", async () => {
        const { stdout } = await execa("sfdisk", ["--json", raw]);
        const boot = (JSON.parse(stdout) as { partitiontable: { partitions: Array<{ start: number }> } }).partitiontable.partitions[0];
        const env = { MTOOLS_SKIP_CHECK: "1" };
        const config = (await execa("mtype", ["-i", `${raw}@@${boot.start * 512}`, "::/config.txt"], { env })).stdout;
        assert.equal(config.split("\n").filter((l) => l.trim() === "dtparam=audio=on").length, 1, config);
        assert.match((await execa("mdir", ["-b", "-i", `${raw}@@${boot.start * 512}`, "::/"], { env })).stdout, /^::\/ssh$/m);
    });

    it("provisioning converged: the playbook's second run changed nothing (NFR-2)", () => {
        assert.match(fs.readFileSync(result.logPath, "utf8"), /playbook\.yml converged: first run changed [1-9]\d*, second run changed 0/);
    });
});
