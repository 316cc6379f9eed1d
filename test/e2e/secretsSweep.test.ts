// @slow: one `pulumi up` of the local stack with every secret set at a value this test knows — the GitHub token,
// the registry (GHCR) token, the Proxmox API token and the GPG passphrase, all as Pulumi secrets — publishing to
// every target (store, an authenticated registry, the GitHub fake, a Proxmox VE API) with signed evidence. Then
// none of the values may appear anywhere: the raw state file, `pulumi stack export`, the stack outputs, the CLI's
// output, the build log, the evidence, the release metadata, the store, or the argv of any process sampled from
// /proc while the run was going. The test fails on one occurrence and names where.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";
import { startFakePve, type FakePve } from "../helpers/fakePve";
import { localStack, testWorkDir, type LocalStack } from "../helpers/localStack";
import { startRegistry, type TestRegistry } from "../helpers/registry";

/** Every file under dir (following no links), for a byte search. */
function filesUnder(dir: string): string[] {
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir, { withFileTypes: true, recursive: true })
        .filter((e) => e.isFile())
        .map((e) => path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
}

/** The argv of every process on the machine, as NUL-joined text. */
function sampleArgv(): string[] {
    const out: string[] = [];
    for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        try {
            out.push(fs.readFileSync(`/proc/${pid}/cmdline`, "latin1").replace(/\0/g, " "));
        } catch {
            /* gone */
        }
    }
    return out;
}

describe("secrets sweep: no secret value anywhere after a full publishing run @slow", function () {
    this.timeout(1_800_000);
    const secrets = {
        githubToken: "ghp_" + "SweepGithubToken7c1e0d9a5b3f42e8aa61",
        ghcrToken: "ghcr-" + "SweepRegistryToken4f2a9c7e1b",
        proxmoxApiToken: "root@pam!sweep=" + "SweepProxmoxSecret-5d8e2b7a9c1f",
        gpgPassphrase: "Sweep" + "GpgPassphrase-0a9b8c7d6e",
    };
    /** The part of each secret that must never show: the whole value, and the Proxmox token's secret half alone. */
    const needles = [...Object.values(secrets), secrets.proxmoxApiToken.split("=")[1]];
    let gh: FakeGithub;
    let pve: FakePve;
    let registry: TestRegistry;
    let env: LocalStack;
    let gnupg: string;
    let argvSeen: string[] = [];
    let cliOutput = "";

    before(async () => {
        gh = await startFakeGithub({ token: secrets.githubToken, repos: [["deevnet", "images"]] });
        pve = await startFakePve({ node: "pve1", token: secrets.proxmoxApiToken });
        registry = await startRegistry({ auth: { user: "sweeper", password: secrets.ghcrToken } });
        gnupg = fs.mkdtempSync(path.join(os.tmpdir(), "if-sweep-gpg-"));
        await execa("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--quick-generate-key", "Sweep <sweep@test.invalid>", "ed25519", "sign", "never"],
            { env: { GNUPGHOME: gnupg }, input: `${secrets.gpgPassphrase}\n` });
        await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg } });
        env = await localStack({
            config: [
                ["factory:oci", JSON.stringify({ registry: registry.host, repository: "sweep", plainHttp: true, username: "sweeper" })],
                ["factory:release", JSON.stringify({ owner: "deevnet", repo: "images", apiUrl: gh.url })],
                ["factory:proxmox", JSON.stringify({ endpoint: `${pve.url}/`, insecure: true, node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0", vmidRange: [9000, 9099] })],
            ],
            env: { IMAGE_FACTORY_GITHUB_RETRY_MS: "20", EVIDENCE_SIGN: "1", EVIDENCE_GPG_KEY: "sweep@test.invalid", GNUPGHOME: gnupg },
        });
        for (const [k, v] of Object.entries(secrets)) await env.project.setConfig("local", `factory:${k}`, v, { secret: true });

        // The run, with /proc sampled every 50 ms until it ends.
        let running = true;
        const sampler = (async () => {
            while (running) {
                argvSeen.push(...sampleArgv());
                await new Promise((r) => setTimeout(r, 50));
            }
        })();
        const up = await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"], { reject: false });
        running = false;
        await sampler;
        cliOutput = up.all;
        assert.equal(up.exitCode, 0, up.all.slice(-6000));
        argvSeen = [...new Set(argvSeen)];
    });
    after(async () => {
        await env?.close();
        await Promise.all([gh?.close(), pve?.close(), registry?.stop()]);
        if (gnupg) {
            await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg }, reject: false });
            fs.rmSync(gnupg, { recursive: true, force: true });
        }
    });

    const assertClean = (where: string, text: string) => {
        for (const n of needles) assert.ok(!text.includes(n), `a secret (${n.slice(0, 6)}…) appears in ${where}`);
    };

    it("the run used every secret: it published to the registry, GitHub and Proxmox, and signed its evidence", async () => {
        const out = (await env.project.outputs("local")).images as Record<string, { ociRef: string | null; releaseAssetUrl: string | null; proxmox: unknown; validation: { evidencePath: string } }>;
        const img = out["debian-12-minimal"];
        assert.ok(img.ociRef && img.releaseAssetUrl && img.proxmox, JSON.stringify(img));
        assert.ok(filesUnder(img.validation.evidencePath).some((f) => f.endsWith("SHA256SUMS.asc")), "evidence not signed");
        // The sampler saw the moments that matter: oras talking to the registry and the provider process at work.
        assert.ok(argvSeen.some((l) => /\boras\b.*\b(push|login|manifest|attach|blob)\b/.test(l)), `no oras command sampled among ${argvSeen.length}`);
        assert.ok(argvSeen.some((l) => /dynamic-provider/.test(l)), "the dynamic-provider process was never sampled");
    });

    it("no secret in the raw state file, the exported state or the stack outputs", async () => {
        const stateFiles = filesUnder(env.project.backend); // the stack's state, its backups and history
        assert.ok(stateFiles.length > 0);
        for (const f of stateFiles) assertClean(`the state backend file ${path.relative(env.project.backend, f)}`, fs.readFileSync(f, "latin1"));
        assertClean("pulumi stack export", (await env.project.pulumi(["stack", "export", "--stack", "local"])).stdout);
        assertClean("pulumi stack output --json", (await env.project.pulumi(["stack", "output", "--json", "--stack", "local"])).stdout);
    });

    it("no secret in the CLI's output, the build log, the evidence, the release metadata or the store", async () => {
        assertClean("the output of pulumi up", cliOutput);
        const out = (await env.project.outputs("local")).images as Record<string, { buildKey: string; validation: { evidencePath: string } }>;
        const img = out["debian-12-minimal"];
        const dirs = [
            path.join(env.project.dir, ".cache"), // evidence and logs of this project copy
            img.validation.evidencePath,
            path.join(testWorkDir(), "builds", "debian-12-minimal", img.buildKey), // the build log and build.json
            env.storeRoot,
            path.join(env.project.dir, "releases"), path.join(env.project.dir, "manifests"), path.join(env.project.dir, "docs"),
        ];
        let searched = 0;
        for (const d of dirs) {
            for (const f of filesUnder(d)) {
                if (fs.statSync(f).size > 64 * 1024 * 1024) continue; // image files: their bytes are built before any secret is read
                assertClean(f, fs.readFileSync(f, "latin1"));
                searched++;
            }
        }
        assert.ok(searched > 10, `only ${searched} files searched`);
    });

    it("no secret in the argv of any process while the run was going", () => {
        for (const line of argvSeen) assertClean(`argv: ${line.slice(0, 120)}`, line);
    });
});
