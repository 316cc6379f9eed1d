import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { copyFileHashed, hashFile, parseSha256sums, sha256sumLine } from "../../lib/sha256";
import { threadHash } from "../../lib/threadHash";

describe("lib/sha256", () => {
    let dir: string;
    let file: string;
    let data: Buffer;
    before(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-sha-"));
        file = path.join(dir, "blob.bin");
        data = crypto.randomBytes(3 * 1024 * 1024 + 17); // several chunks plus a ragged end
        fs.writeFileSync(file, data);
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("hashes a file by streaming, matching sha256sum and counting every byte", async () => {
        const progress: number[] = [];
        const d = await hashFile(file, (n) => progress.push(n));
        assert.equal(d.sha256, crypto.createHash("sha256").update(data).digest("hex"));
        assert.equal(d.sha256, (await execa("sha256sum", [file])).stdout.split(" ")[0]);
        assert.equal(d.size, data.length);
        assert.equal(progress[progress.length - 1], data.length);
        assert.ok(progress.length >= 4, "expected several chunks");
    });

    it("hashes an empty file", async () => {
        const empty = path.join(dir, "empty");
        fs.writeFileSync(empty, "");
        assert.deepEqual(await hashFile(empty), { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", size: 0 });
    });

    it("copies through .partial and returns the digest of what it wrote", async () => {
        const dst = path.join(dir, "copy.bin");
        const d = await copyFileHashed(file, dst);
        assert.deepEqual(fs.readFileSync(dst), data);
        assert.equal(d.sha256, crypto.createHash("sha256").update(data).digest("hex"));
        assert.equal(fs.existsSync(`${dst}.partial`), false);
    });

    it("writes sha256sum lines that sha256sum -c accepts, and reads them back", async () => {
        const d = await hashFile(file);
        fs.writeFileSync(path.join(dir, "blob.bin.sha256"), sha256sumLine(d.sha256, "blob.bin"));
        const r = await execa("sha256sum", ["-c", "blob.bin.sha256"], { cwd: dir });
        assert.equal(r.stdout, "blob.bin: OK");
        assert.deepEqual(parseSha256sums(fs.readFileSync(path.join(dir, "blob.bin.sha256"), "utf8")), new Map([["blob.bin", d.sha256]]));
        assert.throws(() => sha256sumLine("abc", "x"), /not a sha256/);
        assert.throws(() => parseSha256sums("nothex  file\n"), /malformed/);
    });

    it("sha256sum -c fails once a byte changes", async () => {
        const copy = path.join(dir, "flip.bin");
        fs.copyFileSync(file, copy);
        const d = await hashFile(copy);
        fs.writeFileSync(`${copy}.sha256`, sha256sumLine(d.sha256, "flip.bin"));
        const fd = fs.openSync(copy, "r+");
        fs.writeSync(fd, Buffer.from([data[1000] ^ 0xff]), 0, 1, 1000);
        fs.closeSync(fd);
        const r = await execa("sha256sum", ["-c", "flip.bin.sha256"], { cwd: dir, reject: false });
        assert.notEqual(r.exitCode, 0);
        assert.match(r.stdout, /FAILED/);
    });
});

describe("lib/threadHash: SHA-256 on a worker thread", () => {
    it("hashes chunks in order, whether they own their memory or are views into a pool, and gives each back intact", async () => {
        const parts = [crypto.randomBytes(1 << 20), Buffer.from("small: a view into Node's buffer pool"), crypto.randomBytes(5000).subarray(17, 4000)];
        const copies = parts.map((p) => Buffer.from(p));
        const h = threadHash();
        const back = [...await h.update(parts.slice(0, 2)), ...await h.update(parts.slice(2))];
        assert.deepEqual(back.map((b, i) => b.equals(copies[i])), [true, true, true]);
        assert.equal(await h.digest(), crypto.createHash("sha256").update(Buffer.concat(copies)).digest("hex"));
    });

    it("hashes a file's first bytes before the chunks (a resumed download)", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-th-"));
        try {
            const onDisk = crypto.randomBytes(3 * (1 << 20) + 5);
            fs.writeFileSync(path.join(dir, "partial"), Buffer.concat([onDisk, Buffer.from("not part of the prefix")]));
            const rest = crypto.randomBytes(70_000);
            const h = threadHash({ path: path.join(dir, "partial"), bytes: onDisk.length });
            await h.update([Buffer.from(rest)]);
            assert.equal(await h.digest(), crypto.createHash("sha256").update(onDisk).update(rest).digest("hex"));
            const cut = threadHash({ path: path.join(dir, "partial"), bytes: onDisk.length + 1000 });
            await assert.rejects(cut.digest(), /cut short while it was hashed/);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("refuses work once closed", async () => {
        const h = threadHash();
        h.close();
        await assert.rejects(h.update([Buffer.from("x")]), /closed/);
    });
});
