// Full disks, for real: the artifact store and a plain atomic write on a small tmpfs. The failure names the
// directory, the bytes needed and free; nothing half-written is left (no .partial, no final file); after space is
// freed (the tmpfs grown) the same call converges. Needs root (mount); skipped with the reason otherwise.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeFileAtomic } from "../../lib/atomic";
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
});
