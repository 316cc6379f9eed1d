// The shared build cache (issue 37) on loopback: Debian's docker-registry with TLS and htpasswd auth, real gpg keys,
// real oras, the real engine. Two builders (separate project copies, work directories, stores and evidence roots)
// build different images at the same time and push them; a third builder previews, then pulls both and builds
// nothing: same sha256 and versions, its gate boots nothing (the entry's boot report stands), and it sends no blob.
// Every kind of poisoned entry is refused naming the entry and the reason, and the image is built instead; with the
// cache off, the registry sees no request at all.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildCacheSettings, entryTag, pullEntry, STATEMENT, STATEMENT_SIGNATURE, type BuildCacheInput, type EntryStatement } from "../../lib/buildCache";
import { stringify } from "yaml";
import { makeOrigin, runJob, type Contexts, type Origin } from "../helpers/ciRunner";
import { LOCAL_KEY, localStack, type LocalStack } from "../helpers/localStack";
import { CACHE_ROOT } from "../helpers/setup";
import { startRegistry, type TestRegistry } from "../helpers/registry";

interface ImageOut { version: string; sha256: string; size: number }

const USER = "builder";
const PASSWORD = "cache-password-7f3a";

describe("build cache: signed entries in the OCI registry, shared by builders (issue 37) @slow", function () {
    this.timeout(30 * 60_000);
    let registry: TestRegistry;
    let tmp: string;
    let gnupg: string;
    let trusted: string;
    const stacks: LocalStack[] = [];
    let env: Record<string, string>;
    let oras: (args: string[], cwd?: string) => Promise<string>;
    const cacheConfig = (o: { pull?: boolean; push?: boolean } = {}): [string, string] => ["factory:buildCache", JSON.stringify({
        registry: registry.host, repository: "lab", pull: o.pull ?? true, push: o.push ?? true, trustedKeys: [trusted],
    })];
    const settingsInput = (): BuildCacheInput => ({
        registry: registry.host, repository: "lab/build-cache", plainHttp: false, username: USER, password: PASSWORD,
        trustedKeys: [fs.readFileSync(trusted, "utf8")], vendor: "deevnet", pull: true, push: false, scratchDir: tmp, evidenceRoot: tmp,
    });
    const builder = async (images: string[], config: Array<[string, string]>, opts: { ownWorkDir?: boolean; boot?: boolean } = {}) => {
        const own: Array<[string, string]> = opts.ownWorkDir === false ? [] : [["factory:workDir", fs.mkdtempSync(path.join(tmp, "work-"))]];
        const s = await localStack({ env, boot: opts.boot, config: [["factory:images", JSON.stringify(images)], ...own, ...config] });
        stacks.push(s);
        return s;
    };
    const images = async (s: LocalStack) => (await s.project.outputs("local")).images as Record<string, ImageOut>;
    const said = (up: { diagnostics: Array<{ message: string }> }, re: RegExp) => up.diagnostics.some((d) => re.test(d.message));

    let a: LocalStack;
    let b: LocalStack;
    let minimal: ImageOut;
    let seed: ImageOut;
    let seedKey: string;

    before(async () => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-buildcache-"));
        registry = await startRegistry({ tls: true, auth: { user: USER, password: PASSWORD } });
        gnupg = path.join(tmp, "gnupg");
        fs.mkdirSync(gnupg, { mode: 0o700 });
        for (const who of ["lab", "stranger"]) {
            await execa("gpg", ["--batch", "--passphrase", "", "--quick-generate-key", `${who} <${who}@test.invalid>`, "ed25519", "sign", "never"], { env: { GNUPGHOME: gnupg } });
        }
        trusted = path.join(tmp, "lab-evidence.asc");
        fs.writeFileSync(trusted, (await execa("gpg", ["--armor", "--export", "lab@test.invalid"], { env: { GNUPGHOME: gnupg } })).stdout);
        env = {
            SSL_CERT_FILE: registry.caBundle as string, GHCR_TOKEN: PASSWORD, GHCR_USERNAME: USER,
            EVIDENCE_SIGN: "1", EVIDENCE_GPG_KEY: "lab@test.invalid", GNUPGHOME: gnupg,
        };
        oras = async (args, cwd) => (await execa("oras", [...args, "--username", USER, "--password", PASSWORD], { env: { SSL_CERT_FILE: registry.caBundle as string }, cwd })).stdout;
    });
    after(async () => {
        for (const s of stacks) await s.close().catch(() => undefined);
        await registry?.stop();
        await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg }, reject: false });
        if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("two builders build different images at the same time and push each, signed, under <image>-<build key>", async () => {
        // A boots its qcow2 in the gate; B's stack has no cloud image to boot its seed with (offline checks only).
        a = await builder(["debian-12-minimal"], [cacheConfig()], { ownWorkDir: false, boot: true });
        b = await builder(["nocloud-seed-iso"], [cacheConfig()]);
        const [upA, upB] = await Promise.all([a.project.upEvents("local"), b.project.upEvents("local")]);
        minimal = (await images(a))["debian-12-minimal"];
        seed = (await images(b))["nocloud-seed-iso"];
        assert.ok(said(upA, /debian-12-minimal: pushed .*build-cache:debian-12-minimal-[0-9a-f]{64}/), "A did not push its entry");
        assert.ok(said(upB, /nocloud-seed-iso: pushed .*build-cache:nocloud-seed-iso-[0-9a-f]{64}/), "B did not push its entry");
        const tags = JSON.parse(await oras(["repo", "tags", "--format", "json", `${registry.host}/lab/build-cache`])) as { tags: string[] };
        assert.equal(tags.tags.length, 2);
        seedKey = (tags.tags.find((t) => t.startsWith("nocloud-seed-iso-")) as string).slice("nocloud-seed-iso-".length);
        const m = JSON.parse(await oras(["manifest", "fetch", `${registry.host}/lab/build-cache:${entryTag("debian-12-minimal", tags.tags.find((t) => t.startsWith("debian-12-minimal-"))!.slice(18))}`])) as
            { artifactType: string; layers: Array<{ digest: string; annotations: Record<string, string> }> };
        assert.equal(m.artifactType, "application/vnd.deevnet.image-factory.build-cache.v1+json");
        const titles = m.layers.map((l) => l.annotations["org.opencontainers.image.title"]).sort();
        assert.deepEqual(titles, ["build.json", "build.log", "debian-12-minimal.qcow2", "evidence-build.tar", "evidence-validate.tar", "pkg-manifest.txt", STATEMENT, STATEMENT_SIGNATURE].sort());
        assert.equal(m.layers.find((l) => l.annotations["org.opencontainers.image.title"] === "debian-12-minimal.qcow2")?.digest, `sha256:${minimal.sha256}`);
    });

    it("a third builder previews where each build comes from, then pulls both: nothing built or booted, the same outputs, no blob sent", async () => {
        const c = await builder(["debian-12-minimal", "nocloud-seed-iso"], [cacheConfig(),
            // Its seed would boot with C's cloud image, a boot B's stack could not make: here only what B's entry proves.
            ["factory:validation", JSON.stringify({ boot: true, images: { "nocloud-seed-iso": { boot: false } } })]], { boot: true });
        const preview = await c.project.pulumi(["preview", "--stack", "local"]);
        assert.match(preview.stdout, /debian-12-minimal: build key [0-9a-f]{16} comes from the build cache \(.*build-cache:debian-12-minimal-/);
        assert.match(preview.stdout, /nocloud-seed-iso: build key [0-9a-f]{16} comes from the build cache/);
        const writes = registry.writes();
        const up = await c.project.upEvents("local");
        assert.ok(said(up, /debian-12-minimal: build [0-9a-f]{12} pulled from the build cache .* verified: not building it/), "no pull of debian-12-minimal");
        assert.ok(said(up, /nocloud-seed-iso: build [0-9a-f]{12} pulled from the build cache/), "no pull of nocloud-seed-iso");
        assert.ok(!said(up, /: built in /), "C built something");
        assert.ok(said(up, /debian-12-minimal .*these bytes already passed the boot check/), "C's gate booted again instead of taking the entry's boot report");
        assert.ok(said(up, /already holds .*nothing sent/), "C's push did not find the entry it pulled");
        assert.equal(registry.writes(), writes, "C wrote to the registry");
        const out = await images(c);
        assert.deepEqual([out["debian-12-minimal"].sha256, out["debian-12-minimal"].version], [minimal.sha256, minimal.version]);
        assert.deepEqual([out["nocloud-seed-iso"].sha256, out["nocloud-seed-iso"].version], [seed.sha256, seed.version]);
        // The registry password reached the providers as a secret: the state holds it encrypted only.
        assert.ok(!JSON.stringify(await c.project.exportState("local")).includes(PASSWORD), "the registry password is in the state in plain text");
        assert.ok(!up.diagnostics.some((d) => d.message.includes(PASSWORD)), "the registry password was printed");
    });

    describe("poisoned entries are refused, naming the entry and the reason", () => {
        let good: string; // the seed entry's manifest digest, put back after each case
        let files: string;
        let statement: EntryStatement;
        const repo = () => `${registry.host}/lab/build-cache`;
        const tag = () => `${repo()}:nocloud-seed-iso-${seedKey}`;
        const pushFiles = async (dir: string) => {
            const names = fs.readdirSync(dir).filter((n) => !n.startsWith("."));
            await oras(["push", "--artifact-type", "application/vnd.deevnet.image-factory.build-cache.v1+json", tag(), ...names], dir);
        };
        const copyEntry = () => {
            const d = fs.mkdtempSync(path.join(tmp, "poison-"));
            for (const n of fs.readdirSync(files)) fs.copyFileSync(path.join(files, n), path.join(d, n));
            return d;
        };
        const refusal = async () => {
            const r = await pullEntry(buildCacheSettings(settingsInput()), "nocloud-seed-iso", seedKey, fs.mkdtempSync(path.join(tmp, "pull-")) + "/x");
            assert.equal(r.state, "refused", JSON.stringify(r));
            assert.equal(r.ref, tag());
            return r.state === "refused" ? r.reason : "";
        };
        let certs: string | undefined;
        before(async () => {
            // These cases call lib/buildCache.ts in this process: its oras needs the registry's CA like the stacks' do.
            certs = process.env.SSL_CERT_FILE;
            process.env.SSL_CERT_FILE = registry.caBundle;
            good = JSON.parse(await oras(["manifest", "fetch", "--descriptor", tag()])).digest as string;
            files = fs.mkdtempSync(path.join(tmp, "entry-"));
            await oras(["pull", "-o", files, tag()]);
            statement = JSON.parse(fs.readFileSync(path.join(files, STATEMENT), "utf8")) as EntryStatement;
        });
        after(() => {
            if (certs === undefined) delete process.env.SSL_CERT_FILE;
            else process.env.SSL_CERT_FILE = certs;
        });
        afterEach(async () => {
            await oras(["tag", `${repo()}@${good}`, `nocloud-seed-iso-${seedKey}`]);
        });

        it("the good entry itself verifies and pulls (the checks below refuse only what is wrong)", async () => {
            const r = await pullEntry(buildCacheSettings(settingsInput()), "nocloud-seed-iso", seedKey, path.join(fs.mkdtempSync(path.join(tmp, "pull-")), "x"));
            assert.equal(r.state, "pulled", JSON.stringify(r));
        });

        it("a changed byte in the artifact, pushed with the signed statement", async () => {
            const d = copyEntry();
            const iso = path.join(d, "nocloud-seed-iso.iso");
            const fd = fs.openSync(iso, "r+");
            fs.writeSync(fd, Buffer.from("X"), 0, 1, 40_000);
            fs.closeSync(fd);
            await pushFiles(d);
            assert.match(await refusal(), /nocloud-seed-iso\.iso in the entry is sha256:[0-9a-f]{64}, but the signed statement records sha256:[0-9a-f]{64} \(changed after signing\)/);
        });

        it("a changed byte the registry serves (its stored blob altered): a changed or truncated pull", async () => {
            const digest = statement.subject.find((s) => s.name === "build.log")!.digest.sha256;
            const blob = path.join(registry.dir, "data", "docker", "registry", "v2", "blobs", "sha256", digest.slice(0, 2), digest, "data");
            const saved = fs.readFileSync(blob);
            fs.writeFileSync(blob, saved.subarray(0, saved.length - 7));
            try {
                assert.match(await refusal(), /^the pull did not arrive whole \(.*(mismatch|digest|size)/i);
            } finally {
                fs.writeFileSync(blob, saved);
            }
        });

        it("a statement signed by a key that is not trusted", async () => {
            const d = copyEntry();
            fs.rmSync(path.join(d, STATEMENT_SIGNATURE));
            await execa("gpg", ["--batch", "--armor", "--detach-sign", "--local-user", "stranger@test.invalid", "--output", path.join(d, STATEMENT_SIGNATURE), path.join(d, STATEMENT)], { env: { GNUPGHOME: gnupg } });
            await pushFiles(d);
            assert.match(await refusal(), /it is signed by key [0-9A-F]+, which is not one of factory:buildCache\.trustedKeys/);
        });

        it("a statement changed after it was signed", async () => {
            const d = copyEntry();
            const st = JSON.parse(fs.readFileSync(path.join(d, STATEMENT), "utf8")) as EntryStatement;
            st.predicate.version = "v2099.01.01";
            fs.writeFileSync(path.join(d, STATEMENT), `${JSON.stringify(st, null, 2)}\n`);
            await pushFiles(d);
            assert.match(await refusal(), /its signature does not match the statement/);
        });

        it("another build key's entry under this key's tag", async () => {
            const other = (JSON.parse(await oras(["repo", "tags", "--format", "json", repo()])) as { tags: string[] }).tags.find((t) => t.startsWith("debian-12-minimal-")) as string;
            await oras(["tag", `${repo()}:${other}`, `nocloud-seed-iso-${seedKey}`]);
            assert.match(await refusal(), /its signed statement is for debian-12-minimal with build key [0-9a-f]{64}, not nocloud-seed-iso with [0-9a-f]{64}/);
        });

        it("an entry without a signature", async () => {
            const d = copyEntry();
            fs.rmSync(path.join(d, STATEMENT_SIGNATURE));
            await pushFiles(d);
            assert.match(await refusal(), /it has no signed statement/);
        });

        it("through pulumi up: the refusal is said, and the image is built here, the same bytes", async () => {
            const d = copyEntry();
            fs.rmSync(path.join(d, STATEMENT_SIGNATURE));
            await execa("gpg", ["--batch", "--armor", "--detach-sign", "--local-user", "stranger@test.invalid", "--output", path.join(d, STATEMENT_SIGNATURE), path.join(d, STATEMENT)], { env: { GNUPGHOME: gnupg } });
            await pushFiles(d);
            const e = await builder(["nocloud-seed-iso"], [cacheConfig({ push: false })]);
            const up = await e.project.upEvents("local");
            assert.ok(said(up, new RegExp(`nocloud-seed-iso: the build cache's entry ${tag().replace(/[.]/g, "\\.")} is refused: it is signed by key [0-9A-F]+, which is not one of factory:buildCache\\.trustedKeys\\. Building it here instead`)),
                up.diagnostics.map((x) => x.message).join("\n"));
            assert.ok(said(up, /nocloud-seed-iso v[0-9.]+: built in /), "it was not built after the refusal");
            assert.equal((await images(e))["nocloud-seed-iso"].sha256, seed.sha256, "the ISO build is reproducible: the local build has the entry's bytes");
        });
    });

    describe("the up workflow's build-cache jobs, as a runner runs them (up-stack.yml: plan, then one build-cache job per image)", () => {
        let origin: Origin;
        let contexts: Contexts;
        let work: string;
        const tag = "v2026.12.01";
        before(async () => {
            work = fs.mkdtempSync(path.join(tmp, "lab-work-"));
            // dvnt as the lab would have it with the cache on (one quick image here), its trusted key in the repository.
            origin = await makeOrigin({
                "Pulumi.dvnt.yaml": stringify({ config: {
                    "factory:lab": "dvnt", "factory:images": ["nocloud-seed-iso"], "factory:workDir": work,
                    "factory:bootstrapUser": { name: "ansible", sshAuthorizedKeys: [fs.readFileSync(`${LOCAL_KEY}.pub`, "utf8").trim()] },
                    "factory:buildCache": { registry: registry.host, repository: "lab", push: true, trustedKeys: ["keys/lab-evidence.asc"] },
                } }),
                "keys/lab-evidence.asc": fs.readFileSync(trusted, "utf8"),
            });
            contexts = {
                actor: USER, repository: "deevnet/image-factory",
                vars: { EVIDENCE_GPG_KEY: "lab@test.invalid", OCI_REGISTRY: "" },
                secrets: { GITHUB_TOKEN: "unused", GHCR_TOKEN: PASSWORD, EVIDENCE_GPG_PASSPHRASE: "" },
            };
        });
        after(() => origin?.remove());
        // The runner's keyring holds the evidence key; the registry's CA; the per-user caches.
        const extraEnv = () => ({ SSL_CERT_FILE: registry.caBundle as string, GNUPGHOME: gnupg, IMAGE_FACTORY_CACHE: CACHE_ROOT });
        const run = async (job: string, matrix?: Record<string, string>) => runJob(origin, {
            workflow: "up-stack.yml", job, event: "push", ref: `refs/tags/${tag}`, sha: (await origin.git(["rev-parse", "HEAD"])).stdout.trim(),
            inputs: { stack: "dvnt", max_pass: "" }, matrix, extraEnv: extraEnv(),
        }, contexts);

        it("plan lists the images the stack builds; build-cache builds, gates and pushes one with the tag's version, then finds it", async () => {
            const plan = await run("plan");
            assert.equal(plan.exitCode, 0, plan.output.slice(-4000));
            assert.equal(plan.outputs.images, '["nocloud-seed-iso"]');
            const first = await run("build-cache", { image: "nocloud-seed-iso" });
            assert.equal(first.exitCode, 0, first.output.slice(-6000));
            assert.match(first.output, new RegExp(`nocloud-seed-iso ${tag.replace(/\./g, "\\.")}: built in `));
            assert.match(first.output, /nocloud-seed-iso: pushed .*build-cache:nocloud-seed-iso-[0-9a-f]{64}/);
            assert.match(first.summary, /\| nocloud-seed-iso \| in the build cache after \d+ s \|/);
            assert.equal(first.status, "", `the job left its clone dirty:\n${first.status}`);
            // Another runner (a re-run of the job): the entry is there, verified, and nothing is built or sent.
            const writes = registry.writes();
            const again = await run("build-cache", { image: "nocloud-seed-iso" });
            assert.equal(again.exitCode, 0, again.output.slice(-6000));
            assert.match(again.output, /nocloud-seed-iso: build [0-9a-f]{12} pulled from the build cache .* verified: not building it/);
            assert.doesNotMatch(again.output, /built in /);
            assert.equal(registry.writes(), writes);
        });

        it("a build-cache job without the evidence key fails at once, naming the variable", async () => {
            const saved = contexts.vars.EVIDENCE_GPG_KEY;
            contexts.vars.EVIDENCE_GPG_KEY = "";
            try {
                const r = await run("build-cache", { image: "nocloud-seed-iso" });
                assert.notEqual(r.exitCode, 0);
                assert.match(r.output, /EVIDENCE_GPG_KEY is empty: build-cache entries are signed with the lab's evidence key/);
            } finally {
                contexts.vars.EVIDENCE_GPG_KEY = saved;
            }
        });
    });

    it("with the cache off, nothing asks the registry", async () => {
        const before = JSON.stringify(registry.requests());
        const off = await builder(["nocloud-seed-iso"], []);
        const up = await off.project.upEvents("local");
        assert.ok(!said(up, /build cache/), "a stack without factory:buildCache mentioned the build cache");
        assert.equal(JSON.stringify(registry.requests()), before);
        assert.equal((await images(off))["nocloud-seed-iso"].sha256, seed.sha256);
    });

    it("refuses a stack that pushes without a signing key before anything is built, naming the fix", async () => {
        const s = await builder(["nocloud-seed-iso"], [cacheConfig()]);
        const r = await s.project.pulumi(["up", "--stack", "local", "--yes"], { reject: false, env: { EVIDENCE_SIGN: "" } });
        assert.notEqual(r.exitCode, 0);
        assert.match(r.stdout + r.stderr, /factory:buildCache\.push signs each entry with the evidence key: set EVIDENCE_SIGN=1 and EVIDENCE_GPG_KEY=<key id>/);
        assert.doesNotMatch(r.stdout + r.stderr, /built in/);
    });
});
