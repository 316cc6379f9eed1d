// @slow: the validation gate under `pulumi up`: a recipe that turns password login on builds, fails validation,
// is never published, and `pulumi up` fails with the report. Evidence of both the build and the validation is
// written, verifies, holds no secret from the environment, and is signed when asked.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { localStack, TEST_WORK_DIR, type LocalStack } from "../helpers/localStack";
import { REPO_ROOT } from "../helpers/setup";

const FAKE_GITHUB = "ghp_" + "FAKEfakeFAKEfake0123456789abcdefABCD";
const FAKE_GHCR = "fake-ghcr-token-value-0123456789";

function grepTree(dir: string, needles: string[]): string[] {
    const hits: string[] = [];
    const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) walk(p);
            else if (needles.some((n) => fs.readFileSync(p).includes(n))) hits.push(p);
        }
    };
    if (fs.existsSync(dir)) walk(dir);
    return hits;
}

function packets(evidenceRoot: string, image: string): string[] {
    const base = path.join(evidenceRoot, "images", "vm", image);
    if (!fs.existsSync(base)) return [];
    const out: string[] = [];
    for (const v of fs.readdirSync(base)) for (const t of fs.readdirSync(path.join(base, v))) for (const k of fs.readdirSync(path.join(base, v, t))) out.push(path.join(base, v, t, k));
    return out.sort();
}

describe("validation gate and evidence through pulumi up @slow", function () {
    this.timeout(1_800_000);
    let env: LocalStack;
    let evidenceRoot: string;

    before(async () => {
        env = await localStack({ env: { GITHUB_TOKEN: FAKE_GITHUB, GHCR_TOKEN: FAKE_GHCR } });
        // A recipe that is wrong on purpose: its playbook turns password login back on in a drop-in.
        const bad = path.join(env.project.dir, "images", "bad-password-login");
        fs.mkdirSync(bad, { recursive: true });
        fs.writeFileSync(path.join(bad, "image.ts"), fs.readFileSync(path.join(REPO_ROOT, "images", "debian-12-minimal", "image.ts"), "utf8")
            .replace('name: "debian-12-minimal"', 'name: "bad-password-login"'));
        fs.writeFileSync(path.join(bad, "playbook.yml"), [
            "- hosts: all",
            "  gather_facts: false",
            "  tasks:",
            "    - name: Turn password login on (the mistake this test is about)",
            "      ansible.builtin.copy:",
            "        dest: /etc/ssh/sshd_config.d/05-password.conf",
            "        content: \"PasswordAuthentication yes\\n\"",
            "        mode: \"0644\"",
            "",
        ].join("\n"));
        await env.project.setConfig("local", "factory:images", '["bad-password-login"]');
        evidenceRoot = path.join(env.project.dir, "evidence");
    });
    after(async () => env?.close());

    it("a failing image stops pulumi up with the report and is never published", async () => {
        const r = await env.project.pulumi(["up", "--stack", "local", "--yes"], { reject: false });
        assert.notEqual(r.exitCode, 0);
        assert.match(r.all, /validation of bad-password-login v\d{4}\.\d{2}\.\d{2}(\.\d+)? \(.*\): FAILED/);
        assert.match(r.all, /FAIL {2}sshd\.password-authentication +effective PasswordAuthentication is yes \(\/etc\/ssh\/sshd_config\.d\/05-password\.conf:1\)/);
        assert.match(r.all, /fix: set PasswordAuthentication no and PermitRootLogin prohibit-password/);
        assert.match(r.all, /The image is not published/);
        // Only the version ledger (the version was assigned to this build) may exist: no artifact was stored.
        const inStore = fs.existsSync(path.join(env.storeRoot, "images", "bad-password-login")) ? fs.readdirSync(path.join(env.storeRoot, "images", "bad-password-login")) : [];
        assert.deepEqual(inStore.filter((f) => f !== "versions.json"), [], "a failing image reached the store");
        const state = await env.project.exportState("local");
        const types = (state.deployment.resources ?? []).map((x) => String(x.type));
        assert.ok(!types.includes("pulumi-nodejs:dynamic/image-factory:StoredArtifact"), types.join(", "));
    });

    it("wrote build and validation evidence that verifies and holds no secret from the environment", async () => {
        const found = packets(evidenceRoot, "bad-password-login");
        assert.deepEqual(found.map((p) => path.basename(p)), ["build", "validate"], found.join("\n"));
        for (const p of found) {
            const v = await execa(path.join(REPO_ROOT, "bin", "verify-evidence"), ["--dir", p]);
            assert.match(v.stdout, /^verify-evidence: OK \d+ files match SHA256SUMS/);
        }
        const report = JSON.parse(fs.readFileSync(path.join(found[1], "report.json"), "utf8")) as { passed: boolean; checks: Array<{ id: string; status: string }> };
        assert.equal(report.passed, false);
        assert.deepEqual(report.checks.filter((c) => c.status === "fail").map((c) => c.id), ["sshd.password-authentication"]);
        assert.deepEqual(fs.readdirSync(found[0]).sort(), ["SHA256SUMS", "build.json", "build.log", "inputs.json", "pkg-manifest.txt", "result.json", "tools.json"]);
        assert.deepEqual(grepTree(evidenceRoot, [FAKE_GITHUB, FAKE_GHCR]), []);
        assert.deepEqual(grepTree(path.join(TEST_WORK_DIR, "builds", "bad-password-login"), [FAKE_GITHUB, FAKE_GHCR]).filter((f) => !f.endsWith(".qcow2")), []);
    });

    it("make validate checks any qcow2 offline, prints the report and exits non-zero on failure", async () => {
        const builds = path.join(TEST_WORK_DIR, "builds", "bad-password-login");
        const qcow2 = path.join(builds, fs.readdirSync(builds)[0], "bad-password-login.qcow2");
        const evidenceDir = fs.mkdtempSync(path.join(os.tmpdir(), "if-mv-"));
        const r = await execa("make", ["-s", "validate", `QCOW2=${qcow2}`, "IMAGE=bad-password-login", "VERSION=v2000.01.01"], {
            cwd: REPO_ROOT, reject: false, env: { EVIDENCE_DIR: evidenceDir },
        });
        assert.equal(r.exitCode, 2, r.all); // make's exit status when the recipe fails
        assert.match(r.stdout, /FAIL {2}sshd\.password-authentication/);
        assert.match(r.stdout, /FAIL {2}build-info\.matches +version is "v\d{4}.*", expected "v2000\.01\.01"/);
        assert.match(r.stdout, /PASS {2}cloud-init\.installed/);
        assert.match(r.stdout, /^evidence: .*\/images\/vm\/bad-password-login\/v2000\.01\.01\/\d{8}T\d{6}Z\/validate$/m);
        const rel = await execa("make", ["-s", "validate", "QCOW2=relative/path.qcow2", "IMAGE=x", "VERSION=v2000.01.01"], { cwd: REPO_ROOT, reject: false, env: { EVIDENCE_DIR: evidenceDir } });
        assert.match(rel.stdout, /FAIL {2}qcow2\.path +"relative\/path\.qcow2" is not an absolute path/);
        assert.match(rel.stdout, /fix: QCOW2 must point to a local file and the path must be absolute/);
        fs.rmSync(evidenceDir, { recursive: true, force: true });
    });

    it("signs evidence in pulumi up with EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY and the secret factory:gpgPassphrase", async () => {
        const gnupg = fs.mkdtempSync(path.join(os.tmpdir(), "if-gnupg-"));
        fs.chmodSync(gnupg, 0o700);
        const passphrase = "pulumi-secret-passphrase";
        try {
            await execa("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--quick-generate-key", "Factory Evidence <factory@test.invalid>", "ed25519", "sign", "never"],
                { env: { GNUPGHOME: gnupg }, input: `${passphrase}\n` });
            await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg } });
            await env.project.setConfig("local", "factory:images", '["debian-12-minimal"]');
            await env.project.setConfig("local", "factory:gpgPassphrase", passphrase, { secret: true });
            const signEnv = { EVIDENCE_SIGN: "1", EVIDENCE_GPG_KEY: "factory@test.invalid", GNUPGHOME: gnupg };
            // A fresh validation (new stack state for this image) is signed; the passphrase travels as a Pulumi secret.
            await env.project.pulumi(["destroy", "--stack", "local", "--yes"], { env: signEnv });
            const up = await env.project.upEvents("local", [], signEnv);
            assert.equal(up.result, "succeeded");
            const signed = packets(evidenceRoot, "debian-12-minimal").filter((p) => fs.existsSync(path.join(p, "SHA256SUMS.asc")));
            assert.ok(signed.length >= 1, "no signed packet");
            for (const p of signed) {
                const v = await execa(path.join(REPO_ROOT, "bin", "verify-evidence"), ["--dir", p], { env: { GNUPGHOME: gnupg } });
                assert.match(v.stdout, /signature valid/);
            }
            const state = JSON.stringify(await env.project.exportState("local"));
            assert.ok(!state.includes(passphrase), "the GPG passphrase is in the state in plain text");
            assert.deepEqual(grepTree(evidenceRoot, [passphrase]), []);
        } finally {
            await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg }, reject: false });
            fs.rmSync(gnupg, { recursive: true, force: true });
        }
    });
});

describe("the boot gate stops an image that fails in the booted system @slow", function () {
    this.timeout(1_800_000);
    let env: LocalStack;

    before(async () => {
        env = await localStack({ boot: true });
        // The recipe's own smoke check fails (as a service that does not come up would): the image boots fine otherwise.
        fs.writeFileSync(path.join(env.project.dir, "images", "debian-12-minimal", "smoke.sh"),
            "echo 'the artifact service did not come up (on purpose)'\nexit 3\n");
    });
    after(async () => env?.close());

    it("pulumi up fails naming the image, the failed check and the console's last lines; nothing is published", async () => {
        const up = await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"], { reject: false });
        assert.notEqual(up.exitCode, 0);
        assert.match(up.all, /boot check of debian-12-minimal v\S+ failed under (KVM|TCG) after \d+ s:/);
        assert.match(up.all, /FAIL recipe-smoke: exit 3: the artifact service did not come up \(on purpose\)/);
        assert.doesNotMatch(up.all, /FAIL (ssh-login|cloud-init|sudo|python3|sshd-posture|hostname|bootstrap-user|network)\b/, "only the recipe's check fails");
        assert.match(up.all, /console \(\S+console\.log\), last lines:/);
        assert.match(up.all, /The image is not published/);
        const stored = path.join(env.storeRoot, "images", "debian-12-minimal");
        assert.deepEqual(fs.existsSync(stored) ? fs.readdirSync(stored).filter((f) => f !== "versions.json") : [], [], "nothing stored (the version ledger aside)");
        const packet = packets(path.join(env.project.dir, "evidence"), "debian-12-minimal").find((p) => p.endsWith("/validate"));
        assert.ok(packet, "no validation evidence");
        assert.match(fs.readFileSync(path.join(packet, "boot-report.txt"), "utf8"), /: FAILED\n[\s\S]*FAIL recipe-smoke/);
        await execa(path.join(REPO_ROOT, "bin", "verify-evidence"), ["--dir", packet]);
    });
});
