// @slow: `pulumi up --stack local` builds a real bootable image on this machine, stores it under its stable
// path and URL, and a second `up` does nothing. The boot gate booted it under qemu before it was stored.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { localStack, TEST_WORK_DIR, type LocalStack } from "../helpers/localStack";
import { REPO_ROOT } from "../helpers/setup";
import { OfflineImage } from "../../lib/validation/inspect";

interface ImageOutput {
    version: string;
    sha256: string;
    size: number;
    buildKey: string;
    qcow2Url: string;
    sha256Url: string;
    storePath: string;
    buildInfo: { git: unknown; base: { id: string; sha256: string }; recipe: { sha256: string }; buildTime: string; tools: Record<string, string> };
    validation: { passed: boolean; checks: string[]; evidencePath: string; checksRan: string[]; boot: { accelerator: string; sshReadySeconds: number; totalSeconds: number; checks: string[] } | null };
}

function httpGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; sha256: string; bytes: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
        http.get(url, { headers }, (res) => {
            const hash = crypto.createHash("sha256");
            let bytes = 0;
            const keep: Buffer[] = [];
            res.on("data", (c: Buffer) => {
                hash.update(c);
                bytes += c.length;
                if (bytes <= 1 << 16) keep.push(c);
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, sha256: hash.digest("hex"), bytes, body: Buffer.concat(keep) }));
            res.on("error", reject);
        }).on("error", reject);
    });
}

describe("Qcow2Image: a real image through pulumi up --stack local @slow", function () {
    this.timeout(1_800_000);
    let env: LocalStack;
    let image: ImageOutput;

    before(async () => {
        env = await localStack({ boot: true });
    });
    after(async () => env?.close());

    it("builds, validates the build log's stages as engine log lines, and stores the image", async () => {
        const t0 = Date.now();
        const up = await env.project.upEvents("local");
        console.log(`      first up: ${((Date.now() - t0) / 1000).toFixed(1)}s`);
        assert.equal(up.result, "succeeded");
        const buildLines = up.diagnostics.filter((d) => d.urn?.includes("ImageBuild::debian-12-minimal-build")).map((d) => d.message);
        assert.ok(buildLines.some((m) => /→ debian-12-minimal v\d{4}\.\d{2}\.\d{2}(\.\d+)?: \[1\/8\] mmdebstrap bookworm/.test(m)) ||
            buildLines.some((m) => /found in the cache|already exists/.test(m)), `no progress lines on the build resource:\n${buildLines.join("")}`);
        assert.ok(buildLines.some((m) => /done in \d/.test(m) || /reusing it/.test(m)));

        const outputs = await env.project.outputs("local");
        image = (outputs.images as Record<string, ImageOutput>)["debian-12-minimal"];
        assert.match(image.sha256, /^[0-9a-f]{64}$/);
        assert.match(image.version, /^v\d{4}\.\d{2}\.\d{2}(\.\d+)?$/);
        assert.equal(image.storePath, path.join(env.storeRoot, "images", "debian-12-minimal", image.version, `debian-12-minimal-${image.version}.qcow2`));
        assert.equal(image.qcow2Url, `${env.baseUrl}/images/debian-12-minimal/${image.version}/debian-12-minimal-${image.version}.qcow2`);
        assert.equal(fs.statSync(image.storePath).size, image.size);
        assert.equal(image.buildInfo.base.id, "debian:bookworm");
        assert.match(image.buildInfo.base.sha256, /^[0-9a-f]{64}$/);
        assert.match(image.buildInfo.buildTime, /^\d{4}-\d{2}-\d{2}T/);
        assert.ok(image.buildInfo.tools["qemu-img"].startsWith("qemu-img version"));
        assert.equal(image.validation.passed, true);
        assert.ok(image.validation.checks.length >= 9 && image.validation.checks.every((c) => c.startsWith("pass ")), image.validation.checks.join(", "));
        assert.match(image.validation.evidencePath, /evidence\/images\/vm\/debian-12-minimal\/v[\d.]+\/\d{8}T\d{6}Z\/validate$/);
        await execa(path.join(REPO_ROOT, "bin", "verify-evidence"), ["--dir", image.validation.evidencePath]);
        for (const f of ["build.json", "pkg-manifest.txt", "build.log"]) assert.ok(fs.existsSync(path.join(path.dirname(image.storePath), f)), `${f} is not next to the artifact`);
        assert.match(fs.readFileSync(path.join(path.dirname(image.storePath), "build.log"), "utf8"), /\$ mmdebstrap --mode=root --variant=minbase|build .* of debian-12-minimal/);
    });

    it("passes qemu-img check and sha256sum -c, and the HTTP URL serves the same bytes", async () => {
        await execa("qemu-img", ["check", image.storePath]);
        const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", image.storePath])).stdout) as { format: string; "virtual-size": number; "format-specific": { data: { "compression-type": string } } };
        assert.equal(info.format, "qcow2");
        assert.equal(info["virtual-size"], 2048 * 1024 * 1024);
        assert.equal(info["format-specific"].data["compression-type"], "zstd", "compressed with zstd (lib/stages/disk.ts QCOW2_OPTIONS)");
        const check = await execa("sha256sum", ["-c", `debian-12-minimal-${image.version}.qcow2.sha256`], { cwd: path.dirname(image.storePath) });
        assert.match(check.stdout, /: OK$/);
        const { stdout } = await execa("sha256sum", [image.storePath]);
        assert.equal(stdout.split(" ")[0], image.sha256);

        const full = await httpGet(image.qcow2Url);
        assert.equal(full.status, 200);
        assert.equal(Number(full.headers["content-length"]), image.size);
        assert.equal(full.bytes, image.size);
        assert.equal(full.sha256, image.sha256);
        assert.equal(full.headers.etag, `"sha256:${image.sha256}"`);
        const part = await httpGet(image.qcow2Url, { Range: "bytes=0-3" });
        assert.equal(part.status, 206);
        assert.equal(part.headers["content-range"], `bytes 0-3/${image.size}`);
        assert.deepEqual([...part.body], [0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb": the qcow2 magic
        const sums = await httpGet(image.sha256Url);
        assert.equal(sums.body.toString(), `${image.sha256}  debian-12-minimal-${image.version}.qcow2\n`);
    });

    it("carries no resolver of its build host, and its initramfs is zstd's as initramfs.conf asks (not gzip's fallback)", async () => {
        const img = await OfflineImage.open(image.storePath, { tmpDir: TEST_WORK_DIR });
        try {
            assert.equal(await img.readFile("/etc/resolv.conf"), "", "the build host's /etc/resolv.conf is in the image");
            assert.match((await img.readFile("/etc/initramfs-tools/initramfs.conf")) ?? "", /^COMPRESS=zstd$/m);
            const boot = await img.extract("/boot");
            const initrds = fs.readdirSync(boot).filter((f) => f.startsWith("initrd.img-"));
            assert.equal(initrds.length, 1, `initramfs files in /boot: ${fs.readdirSync(boot).join(", ")}`);
            const magic = fs.readFileSync(path.join(boot, initrds[0])).subarray(0, 4);
            assert.deepEqual([...magic], [0x28, 0xb5, 0x2f, 0xfd], `${initrds[0]} starts with ${magic.toString("hex")}, not zstd's magic (is zstd in BASE_PACKAGES?)`);
        } finally {
            img.close();
        }
    });

    it("a second up with unchanged inputs builds nothing, hashes nothing and reports no changes", async () => {
        const resultJson = path.join(TEST_WORK_DIR, "builds", "debian-12-minimal", image.buildKey, "result.json");
        const before = fs.statSync(resultJson).mtimeMs;
        const t0 = Date.now();
        const up = await env.project.upEvents("local");
        const seconds = (Date.now() - t0) / 1000;
        console.log(`      second up (no-op): ${seconds.toFixed(1)}s`);
        assert.deepEqual(Object.keys(up.changes), ["same"], JSON.stringify(up.changes));
        const providerLines = up.diagnostics.filter((d) => d.urn?.includes("ImageBuild") && /\[\d\/8\]|reusing it/.test(d.message));
        assert.deepEqual(providerLines, [], "the build provider ran on a no-op up");
        assert.equal(fs.statSync(resultJson).mtimeMs, before);
        await env.project.pulumi(["preview", "--stack", "local", "--expect-no-changes"]);
    });

    it("converges when the stored file is deleted: the next up restores it from the build cache", async () => {
        fs.rmSync(image.storePath);
        const up = await env.project.upEvents("local");
        assert.equal(up.changes.update, 1, JSON.stringify(up.changes));
        assert.ok(!up.diagnostics.some((d) => /\[1\/8\] mmdebstrap/.test(d.message)), "restoring the store rebuilt the image");
        const { stdout } = await execa("sha256sum", [image.storePath]);
        assert.equal(stdout.split(" ")[0], image.sha256);
    });

    it("a changed recipe file changes that image's build key: preview plans its rebuild and nothing else", async () => {
        const playbook = path.join(env.project.dir, "images", "debian-12-minimal", "playbook.yml");
        const original = fs.readFileSync(playbook, "utf8");
        fs.appendFileSync(playbook, "# a change\n");
        try {
            const r = await env.project.pulumi(["preview", "--stack", "local", "--json"]);
            const steps = (JSON.parse(r.stdout) as { steps: Array<{ op: string; urn: string }> }).steps;
            const changed = steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn.split("::").pop()}`);
            assert.ok(changed.includes("replace debian-12-minimal-build"), changed.join("\n"));
            assert.ok(changed.every((c) => /debian-12-minimal-(build|validation|stored)$/.test(c) || /^update image-factory-local$/.test(c)), changed.join("\n"));
        } finally {
            fs.writeFileSync(playbook, original);
        }
    });

    it("the boot gate booted it before publishing: a seed's user logged in, every smoke check passed, the console is evidence", async () => {
        // (The up above booted an overlay under qemu: the artifact's bytes are untouched, its sha256 still the build's.)
        assert.deepEqual(image.validation.checksRan, ["offline", "boot"]);
        const boot = image.validation.boot as NonNullable<ImageOutput["validation"]["boot"]>;
        console.log(`      boot gate: ${boot.accelerator}, SSH after ${boot.sshReadySeconds}s, checks done after ${boot.totalSeconds}s`);
        assert.deepEqual(boot.checks, ["ssh-login", "cloud-init", "system-running", "sudo", "python3", "sshd-posture", "hostname", "bootstrap-user", "rootfs-grown", "network"].map((c) => `pass ${c}`));
        const dir = image.validation.evidencePath;
        const report = fs.readFileSync(path.join(dir, "boot-report.txt"), "utf8");
        assert.match(report, /^boot under (kvm|tcg): SSH after \d+ s, checks done after \d+ s: PASSED\n/);
        assert.match(report, /PASS hostname: boot-debian-12-minimal/, "the seed's hostname took effect");
        assert.match(report, /PASS sshd-posture: .*passwordauthentication no/);
        assert.match(fs.readFileSync(path.join(dir, "console.log"), "latin1"), /Linux version 6\.1\./);
        assert.match(fs.readFileSync(path.join(dir, "SHA256SUMS"), "utf8"), /  console\.log\n/);
        await execa(path.join(REPO_ROOT, "bin", "verify-evidence"), ["--dir", dir]);
        const { stdout } = await execa("sha256sum", [image.storePath]);
        assert.equal(stdout.split(" ")[0], image.sha256, "booting must not write the artifact");
    });
});
