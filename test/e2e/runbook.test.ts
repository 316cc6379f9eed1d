// @slow (issue 36): seed 002's runbook run as written, on a copy of the project with the local stack's config: its
// Debian lines (`IMAGE=debian-12 VERSION=v1`) build the factory's minimal Debian 12 image and boot it, the golden
// path validates that qcow2 through QCOW2_FIXTURE_PATH, writes evidence signed with a real GPG key, and the seed's
// own `ops/images/vm/evidence/verify-evidence.sh --dir` verifies it; a flipped byte fails verification. The Ubuntu
// 24.04 lines name no image here, and say so (README "The runbook (seed 002)").
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PROJECT_ENTRIES, TestProject } from "../helpers/project";
import { CACHE_ROOT, REPO_ROOT } from "../helpers/setup";

describe("seed 002's runbook as written: Debian 12 v1 built, validated through QCOW2_FIXTURE_PATH, signed evidence, verify-evidence.sh @slow", function () {
    this.timeout(40 * 60_000);
    let project: TestProject;
    let gnupg: string;
    let qcow2: string;
    const passphrase = "runbook evidence key";
    const times: Array<[string, number]> = [];

    /** A runbook command line, in the project copy, as an operator types it (make reads the variables from the environment too). */
    async function runbook(argv: string[], env: Record<string, string> = {}) {
        const t0 = Date.now();
        const r = await execa(argv[0], argv.slice(1), { cwd: project.dir, all: true, reject: false, env: { GNUPGHOME: gnupg, ...env } });
        times.push([`${Object.entries(env).map(([k, v]) => `${k}=${/PASSPHRASE/.test(k) ? "***" : v.length > 24 ? "…" : v}`).join(" ")} ${argv.join(" ")}`.trim(), (Date.now() - t0) / 1000]);
        return r;
    }

    before(async () => {
        project = TestProject.create({ entries: [...PROJECT_ENTRIES, "Makefile", "ops"] });
        // What setup leaves in a checkout: the local stack's bootstrap key (its public half is all a build reads); the
        // package files come from the per-user cache.
        fs.mkdirSync(path.join(project.dir, ".cache", "local-ssh"), { recursive: true });
        fs.copyFileSync(path.join(REPO_ROOT, ".cache", "local-ssh", "id_ed25519.pub"), path.join(project.dir, ".cache", "local-ssh", "id_ed25519.pub"));
        fs.mkdirSync(path.join(CACHE_ROOT, "packages"), { recursive: true });
        fs.symlinkSync(path.join(CACHE_ROOT, "packages"), path.join(project.dir, ".cache", "cache"));
        gnupg = fs.mkdtempSync(path.join(os.tmpdir(), "if-runbook-gnupg-"));
        fs.chmodSync(gnupg, 0o700);
        await execa("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--quick-generate-key", "Runbook Evidence <runbook@test.invalid>", "ed25519", "sign", "never"],
            { env: { GNUPGHOME: gnupg }, input: `${passphrase}\n` });
    });
    after(async () => {
        for (const [what, s] of times) console.log(`      ${s.toFixed(0).padStart(4)} s  ${what}`);
        if (gnupg) {
            await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg }, reject: false });
            fs.rmSync(gnupg, { recursive: true, force: true });
        }
        project?.remove();
    });

    it("1) IMAGE_BUILD=1 make image.local.full IMAGE=debian-12 VERSION=v1: builds debian-12-minimal v1, boots it, writes build and validation evidence", async () => {
        const r = await runbook(["make", "image.local.full", "IMAGE=debian-12", "VERSION=v1"], { IMAGE_BUILD: "1" });
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.all ?? "", /^debian-12 is debian-12-minimal here \(the runbook's name for it\)$/m);
        assert.match(r.all ?? "", /^PASS ssh-login: /m, "the image was booted");
        const m = /^debian-12-minimal v1: (\/\S+\.qcow2)\n {2}sha256 ([0-9a-f]{64})/m.exec(r.all ?? "");
        assert.ok(m, r.all);
        qcow2 = m[1];
        // The build is kept by its build key; the version is what it records (build.json) and what evidence is filed under.
        assert.match(qcow2, new RegExp(`^${project.dir.replace(/[.]/g, "\\.")}/\\.cache/builds/debian-12-minimal/[0-9a-f]{64}/debian-12-minimal\\.qcow2$`));
        const runs = path.join(project.dir, "evidence", "images", "vm", "debian-12-minimal", "v1");
        const packets = fs.readdirSync(runs).flatMap((utc) => fs.readdirSync(path.join(runs, utc)));
        assert.deepEqual(packets.sort(), ["build", "validate"]);
    });

    it("2) QCOW2_FIXTURE_PATH=… make image.local.validate IMAGE=debian-12 VERSION=v1 QCOW2=…: every offline check and the boot pass", async () => {
        const r = await runbook(["make", "image.local.validate", "IMAGE=debian-12", "VERSION=v1", `QCOW2=${qcow2}`], { QCOW2_FIXTURE_PATH: qcow2 });
        assert.equal(r.exitCode, 0, r.all);
        assert.doesNotMatch(r.all ?? "", /^FAIL /m);
        assert.match(r.all ?? "", /^PASS cloud-init: /m);
        assert.match(r.all ?? "", /^evidence: \S+\/evidence\/images\/vm\/debian-12-minimal\/v1\/\d{8}T\d{6}Z\/validate$/m);
    });

    let signed: string;
    it("3) EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY=<id> make image.local.evidence IMAGE=debian-12 VERSION=v1 QCOW2=…: evidence signed with the key", async () => {
        const r = await runbook(["make", "image.local.evidence", "IMAGE=debian-12", "VERSION=v1", `QCOW2=${qcow2}`],
            { EVIDENCE_SIGN: "1", EVIDENCE_GPG_KEY: "runbook@test.invalid", EVIDENCE_GPG_PASSPHRASE: passphrase });
        assert.equal(r.exitCode, 0, r.all);
        const m = /^evidence: (\S+) \(signed\)$/m.exec(r.all ?? "");
        assert.ok(m, r.all);
        signed = m[1];
        assert.ok(fs.existsSync(path.join(signed, "SHA256SUMS.asc")));
        assert.doesNotMatch(fs.readFileSync(path.join(signed, "SHA256SUMS.asc"), "utf8") + fs.readdirSync(signed).join(" "), new RegExp(passphrase));
    });

    it("4) ops/images/vm/evidence/verify-evidence.sh --dir <evidence dir>: every packet holds, the signed one with a valid signature; a flipped byte fails", async () => {
        const dir = path.join(project.dir, "evidence");
        const ok = await runbook(["ops/images/vm/evidence/verify-evidence.sh", "--dir", dir]);
        assert.equal(ok.exitCode, 0, ok.all);
        const lines = (ok.stdout).split("\n").filter((l) => l.startsWith("verify-evidence: OK "));
        assert.ok(lines.length >= 4, `build, validate (full), validate, signed evidence:\n${ok.stdout}`);
        assert.ok(lines.some((l) => l.includes(`${path.relative(dir, signed)}: `) && l.endsWith("signature valid")), ok.stdout);
        assert.match(ok.stdout, new RegExp(`verify-evidence: ${lines.length} of ${lines.length} packets hold`));
        // The seed's path also takes one packet.
        assert.equal((await runbook(["ops/images/vm/evidence/verify-evidence.sh", "--dir", signed])).exitCode, 0);
        const report = fs.readdirSync(signed).find((f) => f.endsWith(".json") && f !== "SHA256SUMS");
        assert.ok(report, fs.readdirSync(signed).join(" "));
        const p = path.join(signed, report);
        const bytes = fs.readFileSync(p);
        bytes[10] ^= 1;
        fs.writeFileSync(p, bytes);
        const bad = await runbook(["ops/images/vm/evidence/verify-evidence.sh", "--dir", dir]);
        assert.equal(bad.exitCode, 1);
        assert.match(bad.stderr, new RegExp(`verify-evidence: FAILED ${path.relative(dir, signed).replace(/[.]/g, "\\.")}: ${report.replace(/[.]/g, "\\.")}: `));
    });

    it("the Ubuntu 24.04 lines name no image of this factory: refused at once, listing the images there are", async () => {
        const r = await runbook(["make", "image.local.full", "IMAGE=ubuntu-24.04", "VERSION=v1"], { IMAGE_BUILD: "1" });
        assert.notEqual(r.exitCode, 0);
        assert.match(r.all ?? "", /unknown image "ubuntu-24\.04": there is no images\/ubuntu-24\.04\/image\.ts; known images: .*debian-12-minimal/);
        assert.ok(times[times.length - 1][1] < 30, "refused before any work");
    });
});
