// Full disks, for real: the artifact store, a plain atomic write, the base-image download and a build's work
// directory on a small tmpfs. The failure names the
// directory, the bytes needed and free; nothing half-written is left (no .partial, no final file); after space is
// freed (the tmpfs grown) the same call converges. Needs root (mount); skipped with the reason otherwise.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeFileAtomic } from "../../lib/atomic";
import { download } from "../../lib/baseImages/download";
import { buildImage } from "../../lib/stages/pipeline";
import { planBuild } from "../../lib/stages/plan";
import { loadRecipe } from "../../lib/recipe";
import { machineDebian } from "../helpers/debian";
import { REPO_ROOT } from "../helpers/setup";
import { startFileServer } from "../helpers/fileServer";
import { provider as storedArtifact } from "../../providers/storedArtifact";

describe("full disk: a small tmpfs under the store and under an atomic write", function () {
    this.timeout(60_000);
    let dir: string;
    let mnt: string;
    let source: string;
    let sha: string;
    const SIZE = 3 * 1024 * 1024;

    before(async function () {
        if (process.getuid?.() !== 0) this.skip(); // mounting a tmpfs needs root; CI runs as root
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-full-"));
        mnt = path.join(dir, "small");
        fs.mkdirSync(mnt);
        await execa("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]);
        source = path.join(dir, "img.qcow2");
        const bytes = crypto.randomBytes(SIZE);
        fs.writeFileSync(source, bytes);
        sha = crypto.createHash("sha256").update(bytes).digest("hex");
        for (const f of ["build.json", "pkg-manifest.txt", "build.log"]) fs.writeFileSync(path.join(dir, f), "{}");
    });
    after(async () => {
        if (mnt) await execa("umount", [mnt], { reject: false });
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    const inputs = () => ({
        storeRoot: path.join(mnt, "store"), baseUrl: "http://127.0.0.1:1", name: "img", version: "v2026.01.01", source, sha256: sha, size: SIZE,
        buildJsonPath: path.join(dir, "build.json"), pkgManifestPath: path.join(dir, "pkg-manifest.txt"), logPath: path.join(dir, "build.log"),
    });
    const stored = () => path.join(mnt, "store", "images", "img", "v2026.01.01");

    it("the store checks before copying: names the directory, bytes needed and free; leaves nothing; converges once there is room", async () => {
        await assert.rejects(storedArtifact.create!(inputs()), (err: Error) => {
            assert.match(err.message, new RegExp(`^not enough free space in ${stored().replace(/[.]/g, "\\.")} for img-v2026\\.01\\.01\\.qcow2: ${SIZE} bytes needed, \\d+ free: .*nothing was published`));
            return true;
        });
        assert.deepEqual(fs.readdirSync(stored()), [], "nothing half-written in the store");
        await execa("mount", ["-o", "remount,size=8m", mnt]);
        const r = await storedArtifact.create!(inputs());
        assert.equal(crypto.createHash("sha256").update(fs.readFileSync(r.outs!.path)).digest("hex"), sha);
        assert.deepEqual(fs.readdirSync(stored()).filter((f) => f.endsWith(".partial")), []);
        await execa("mount", ["-o", "remount,size=1m", mnt]).catch(() => undefined); // may refuse while full: fine
    });

    it("an atomic write that hits ENOSPC removes its .partial and names the device's free space", async () => {
        const mnt2 = path.join(dir, "tiny");
        fs.mkdirSync(mnt2);
        await execa("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt2]);
        try {
            const file = path.join(mnt2, "big.bin");
            await assert.rejects(writeFileAtomic(file, crypto.randomBytes(1024 * 1024)),
                /no space left on the device holding \S+big\.bin \(1048576 bytes needed, \d+ free\): free space .* nothing was published/);
            assert.deepEqual(fs.readdirSync(mnt2), [], "no .partial left behind");
        } finally {
            await execa("umount", [mnt2], { reject: false });
        }
    });

    it("a base-image download that cannot fit: refused before a byte is written when the size is known; when it is not, the disk fills mid-way, the received bytes are kept and the next run resumes", async () => {
        const mnt3 = path.join(dir, "cache");
        fs.mkdirSync(mnt3);
        await execa("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt3]);
        const server = await startFileServer(dir); // serves img.qcow2 (3 MiB)
        try {
            const dest = path.join(mnt3, "base.qcow2");
            const url = `${server.url}/img.qcow2`;
            await assert.rejects(download({ url, dest, expectedSha256: sha, retries: 0 }),
                new RegExp(`^Error: not enough free space in ${mnt3.replace(/[.]/g, "\\.")} for base\\.qcow2: ${SIZE} bytes needed, \\d+ free: free space .*factory:baseImageCache`));
            assert.deepEqual(fs.readdirSync(mnt3), [], "nothing written");

            server.behave("img.qcow2", { noLength: true });
            await assert.rejects(download({ url, dest, expectedSha256: sha, retries: 0 }), (err: Error) => {
                assert.match(err.message, new RegExp(`^no space left on the device holding ${dest.replace(/[.]/g, "\\.")}\\.partial \\(\\d+ free\\): free space .*; the \\d+ bytes received are kept in \\S+ and the next run resumes after them`));
                return true;
            });
            const kept = fs.statSync(`${dest}.partial`).size;
            assert.ok(kept > 0 && kept < SIZE, `kept ${kept}`);

            await execa("mount", ["-o", "remount,size=8m", mnt3]);
            const r = await download({ url, dest, expectedSha256: sha, retries: 0 });
            assert.equal(r.sha256, sha);
            assert.equal(r.resumed, true, "the second run resumes after the kept bytes");
            assert.equal(r.bytesFetched, SIZE - kept);
            assert.deepEqual(fs.readdirSync(mnt3).sort(), ["base.qcow2"], "no .partial (or its .json) left");
        } finally {
            await server.stop();
            await execa("umount", [mnt3], { reject: false });
        }
    });

    it("a build's work directory: refused up front when the recipe's need is known; a disk that fills mid-build is named, the work files go; converges once there is room", async () => {
        const work = path.join(dir, "work");
        fs.mkdirSync(work);
        await execa("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", work]);
        try {
            const plan = planBuild({
                recipe: loadRecipe("nocloud-seed-iso"), projectDir: REPO_ROOT, workDir: work, domain: "lab.example", debian: machineDebian(),
                bootstrapUser: { name: "ansible", authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl full-disk"] },
            });
            const req = { ...plan.request, version: "v2026.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } };
            const buildDir = path.join(work, "builds", "nocloud-seed-iso", req.buildKey);
            await assert.rejects(buildImage(req), new RegExp(`not enough free space in ${buildDir} for a build of nocloud-seed-iso: ${256 * 2 ** 20} bytes needed, \\d+ free: free space`));
            assert.ok(!fs.existsSync(path.join(buildDir, "work")), "no work started");

            // Asking for less than it takes: xorriso runs out of room half-way.
            await assert.rejects(buildImage({ ...req, minFreeBytes: 1 }), (err: Error) => {
                assert.match(err.message, new RegExp(`^the build of nocloud-seed-iso ran out of disk space in ${buildDir} \\(\\d+ bytes free now; builds of this image ask for 1 up front\\): free space .*nothing was published and the build's work files were removed\\.\\n`));
                assert.match(err.message, /xorriso/, "the tool's own words follow");
                return true;
            });
            assert.deepEqual(fs.readdirSync(buildDir), ["build.log"], "only the build log is left");

            await execa("mount", ["-o", "remount,size=8m", work]);
            const r = await buildImage({ ...req, minFreeBytes: 1 });
            assert.equal(crypto.createHash("sha256").update(fs.readFileSync(r.path)).digest("hex"), r.sha256);
            assert.deepEqual(fs.readdirSync(buildDir).filter((f) => f.endsWith(".partial") || f === "work" || f === ".lock"), []);
        } finally {
            await execa("umount", [work], { reject: false });
        }
    });
});
