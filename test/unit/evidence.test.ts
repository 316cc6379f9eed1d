// Evidence packets: checksums over every file, optional detached signature (throwaway key in a temporary
// GNUPGHOME), verification that names the first file that fails, and no secrets in what is written.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { evidenceRunDir, signingFromEnv, utcStamp, verifyPacket, writePacket } from "../../lib/evidence/packet";
import { REPO_ROOT } from "../helpers/setup";

const VERIFY = path.join(REPO_ROOT, "bin", "verify-evidence");

function flipByte(file: string, at = 0): void {
    const b = fs.readFileSync(file);
    b[at] ^= 0x01;
    fs.writeFileSync(file, b);
}

describe("lib/evidence and verify-evidence", function () {
    this.timeout(60_000);
    let dir: string;
    beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-ev-"));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("lays packets out as images/vm/<image>/<version>/<UTC>/", () => {
        const when = new Date(Date.UTC(2026, 10, 25, 18, 41, 0, 123));
        assert.equal(utcStamp(when), "20261125T184100Z");
        assert.equal(evidenceRunDir("/e", "img", "v2026.11.25", when), "/e/images/vm/img/v2026.11.25/20261125T184100Z");
    });

    it("lists every file in SHA256SUMS, verifies, and names the first file that fails", async () => {
        const p = path.join(dir, "validate");
        await writePacket(p, [{ name: "report.json", content: "{}\n" }, { name: "logs/a.log", content: "line\n" }, { name: "bin.dat", content: Buffer.from([0, 1, 2]) }]);
        assert.equal(fs.readFileSync(path.join(p, "SHA256SUMS"), "utf8").split("\n").filter(Boolean).length, 3);
        assert.match(fs.readFileSync(path.join(p, "SHA256SUMS"), "utf8"), /  logs\/a\.log\n/);
        assert.deepEqual(await verifyPacket(p), { ok: true, checked: 3, signature: "absent" });
        const cli = await execa(VERIFY, ["--dir", p], { reject: false });
        assert.equal(cli.exitCode, 0);
        assert.match(cli.stdout, /OK 3 files match SHA256SUMS; signature absent/);

        flipByte(path.join(p, "logs/a.log"));
        const bad = await verifyPacket(p);
        assert.equal(bad.ok, false);
        assert.equal(bad.failure?.file, "logs/a.log");
        const cliBad = await execa(VERIFY, ["--dir", p], { reject: false });
        assert.equal(cliBad.exitCode, 1);
        assert.match(cliBad.stderr, /FAILED logs\/a\.log: sha256 [0-9a-f]{64} does not match SHA256SUMS/);
    });

    it("fails on a missing file, an unlisted file, and bad usage", async () => {
        const p = path.join(dir, "build");
        await writePacket(p, [{ name: "a.txt", content: "a" }, { name: "b.txt", content: "b" }]);
        fs.writeFileSync(path.join(p, "extra.txt"), "sneaked in");
        assert.equal((await verifyPacket(p)).failure?.file, "extra.txt");
        fs.rmSync(path.join(p, "extra.txt"));
        fs.rmSync(path.join(p, "a.txt"));
        assert.deepEqual((await verifyPacket(p)).failure, { file: "a.txt", reason: "listed in SHA256SUMS but missing" });
        assert.equal((await execa(VERIFY, [], { reject: false })).exitCode, 2);
        await assert.rejects(writePacket(p, [{ name: "c.txt", content: "c" }]), /already exists; packets are never overwritten/);
    });

    it("redacts secrets: known values, token-shaped strings and secret environment variables", async () => {
        const token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8";
        const saved = process.env.GHCR_TOKEN;
        process.env.GHCR_TOKEN = "s3cr3t-registry-value";
        try {
            const p = path.join(dir, "build");
            await writePacket(p, [
                { name: "build.log", content: `pushing with ${token}\nAuthorization: Bearer abcdefgh12345678\nGHCR_TOKEN=s3cr3t-registry-value\npassphrase hunter2hunter2\n` },
            ], { secrets: ["hunter2hunter2"] });
            const text = fs.readFileSync(path.join(p, "build.log"), "utf8");
            for (const secret of [token, "abcdefgh12345678", "s3cr3t-registry-value", "hunter2hunter2"]) assert.ok(!text.includes(secret), `${secret} leaked:\n${text}`);
            assert.match(text, /\[REDACTED\]/);
            assert.equal((await verifyPacket(p)).ok, true);
        } finally {
            if (saved === undefined) delete process.env.GHCR_TOKEN;
            else process.env.GHCR_TOKEN = saved;
        }
    });

    describe("signing with a throwaway key", () => {
        let gnupg: string;
        const passphrase = "correct horse battery staple";
        before(async function () {
            this.timeout(120_000);
            gnupg = fs.mkdtempSync(path.join(os.tmpdir(), "if-gnupg-"));
            fs.chmodSync(gnupg, 0o700);
            await execa("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--quick-generate-key", "Evidence Test <evidence@test.invalid>", "ed25519", "sign", "never"],
                { env: { GNUPGHOME: gnupg }, input: `${passphrase}\n` });
        });
        after(async () => {
            await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg }, reject: false });
            fs.rmSync(gnupg, { recursive: true, force: true });
        });

        it("signs SHA256SUMS (passphrase on stdin, never in argv) and verifies; a flipped signature or list fails", async () => {
            const sign = signingFromEnv({ EVIDENCE_SIGN: "1", EVIDENCE_GPG_KEY: "evidence@test.invalid", GNUPGHOME: gnupg }, passphrase);
            assert.ok(sign);
            const p = path.join(dir, "validate");
            const r = await writePacket(p, [{ name: "report.json", content: `{"passed":true}\n` }], { sign });
            assert.equal(r.signed, true);
            assert.match(fs.readFileSync(path.join(p, "SHA256SUMS.asc"), "utf8"), /^-----BEGIN PGP SIGNATURE-----/);
            assert.deepEqual(await verifyPacket(p, { gnupgHome: gnupg }), { ok: true, checked: 1, signature: "valid" });
            const cli = await execa(VERIFY, ["--dir", p], { env: { GNUPGHOME: gnupg }, reject: false });
            assert.match(cli.stdout, /signature valid/);
            assert.ok(!fs.readFileSync(path.join(p, "SHA256SUMS"), "utf8").includes(passphrase));

            const sums = path.join(p, "SHA256SUMS");
            const original = fs.readFileSync(sums);
            flipByte(sums, 3);
            const badList = await verifyPacket(p, { gnupgHome: gnupg });
            assert.equal(badList.failure?.file, "SHA256SUMS.asc");
            assert.equal(badList.signature, "invalid");
            fs.writeFileSync(sums, original);

            const asc = path.join(p, "SHA256SUMS.asc");
            const text = fs.readFileSync(asc, "utf8").split("\n");
            const i = text.findIndex((l) => /^[A-Za-z0-9+/=]{20,}$/.test(l));
            text[i] = (text[i][0] === "A" ? "B" : "A") + text[i].slice(1);
            fs.writeFileSync(asc, text.join("\n"));
            const cliBad = await execa(VERIFY, ["--dir", p], { env: { GNUPGHOME: gnupg }, reject: false });
            assert.equal(cliBad.exitCode, 1);
            assert.match(cliBad.stderr, /FAILED SHA256SUMS\.asc: signature does not verify/);
        });

        it("a wrong passphrase fails with a message naming the fix", async () => {
            // The agent remembers the right passphrase from the test before; start it afresh.
            await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg } });
            const p = path.join(dir, "x");
            await assert.rejects(writePacket(p, [{ name: "a", content: "a" }], { sign: { keyId: "evidence@test.invalid", passphrase: "wrong", gnupgHome: gnupg } }),
                /signing the evidence with key evidence@test\.invalid failed: check EVIDENCE_GPG_KEY, the key's passphrase and GNUPGHOME/);
        });

        it("EVIDENCE_SIGN=1 without a key id is a clear error", () => {
            assert.throws(() => signingFromEnv({ EVIDENCE_SIGN: "1" }), /needs EVIDENCE_GPG_KEY/);
            assert.equal(signingFromEnv({}), undefined);
        });
    });
});
