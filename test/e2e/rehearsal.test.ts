// @slow: the lab rehearsal (`make rehearse`): the lab's operations run for real on this machine. Not `pulumi` by hand:
// the CI jobs' own scripts (scripts/ci/*.sh), each in a fresh clone of a bare `origin` whose pre-receive hook refuses
// what branch protection refuses, with the environment Actions gives a tag push, a manual run and a pull request, and
// the step's env taken from the workflow file with the repository's variables and secrets (test/helpers/ciRunner.ts).
// State lives in a self-managed S3 backend (versitygw on loopback), as the labs keep it; every lab endpoint is on
// loopback too: the artifact store over HTTP, an OCI registry with TLS (a CA made for the run) and htpasswd auth,
// the GitHub fake, and one Proxmox VE API per lab (fakepve: pve1 at home, pvem1 on the road).
//
// The operator's first days, in order: a manual run of dvnt up to pass 1; the first tag (dvnt, then dvntm); the same
// tag again (nothing changes, nothing is committed); a pull request's previews; a second tag a day later; two
// runs of one stack at once; destroy. CI runs a subset of dvnt's images (a pass-1 qcow2, the NoCloud seed ISO and a
// pass-2 image, every target of each) with dvntm reusing them. IMAGE_FACTORY_REHEARSAL=full runs all of dvnt's
// images this machine can build (opt-in: builder node, Pi images; about 30 minutes more).
import { strict as assert } from "node:assert";
import execa from "execa";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import type * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import { createArtifactServer } from "../../lib/publish/artifactServer";
import { orasBinary } from "../../lib/publish/oci";
import { loadRecipe } from "../../lib/recipe";
import { dateVersion } from "../../lib/version";
import { parseNotes } from "../../providers/githubReleasePublication";
import { makeOrigin, runJob, type Contexts, type JobResult, type JobSpec, type Origin } from "../helpers/ciRunner";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";
import { startFakePve, type FakePve } from "../helpers/fakePve";
import { configDifferences, labConfig, rehearsalConfig, SUBSTITUTED, type LabEndpoints } from "../helpers/labStack";
import { testWorkDir } from "../helpers/localStack";
import { startRegistry, type TestRegistry } from "../helpers/registry";
import { startS3Backend, type S3Backend } from "../helpers/s3Backend";
import { CACHE_ROOT, REPO_ROOT } from "../helpers/setup";

const FULL = process.env.IMAGE_FACTORY_REHEARSAL === "full";
const CI_SUBSET = ["debian-12-minimal", "nocloud-seed-iso", "debian-12-platform"];
/**
 * Left out of even the full rehearsal, because this machine cannot give them what they need: Packer → Proxmox
 * logs into a clone on a real node (the loopback API runs no VM), and the Pi images start from Raspberry Pi OS,
 * whose pinned download is not reachable here (with IMAGE_FACTORY_BASE_IMAGE_MIRROR serving it, they run).
 */
const NOT_HERE: Record<string, string> = {
    "debian-12-minimal-pve": "Packer → Proxmox needs a real Proxmox VE node",
    ...(process.env.IMAGE_FACTORY_BASE_IMAGE_MIRROR ? {} : {
        "sdr-pi": "Raspberry Pi OS base not reachable (set IMAGE_FACTORY_BASE_IMAGE_MIRROR)",
        "music-detector-pi": "Raspberry Pi OS base not reachable (set IMAGE_FACTORY_BASE_IMAGE_MIRROR)",
    }),
};
const PASS_1 = ["debian-12-minimal", "nocloud-seed-iso"];

interface ImageOut { version: string; sha256: string; size: number; pass: number; qcow2Url?: string; ociRef?: string; releaseAssetUrl?: string; storePath?: string; proxmox?: { node: string; vmid: number; name: string } | null; reusedFrom?: string }

describe(`lab rehearsal: the CI jobs of dvnt and dvntm for real on loopback, state in S3 (${FULL ? "full" : "CI subset"}) @slow`, function () {
    this.timeout(FULL ? 7_200_000 : 3_600_000);
    const githubToken = "ghp_" + "RehearsalFakeToken0123456789abcdefABCD";
    const ghcr = { user: "deevnet-ci", password: "ghcr-" + "rehearsal-token-0123456789" };
    const passphrase = "rehearsal-" + crypto.randomBytes(8).toString("hex");
    let registry: TestRegistry;
    let gh: FakeGithub;
    let home: FakePve;
    let mobile: FakePve;
    let store: http.Server;
    let s3: S3Backend;
    let origin: Origin;
    let endpoints: LabEndpoints;
    let contexts: Contexts;
    let scratch: string;
    const times: Array<[string, number]> = [];
    const images = FULL ? (labConfig("dvnt")["factory:images"] as string[]).filter((i) => !(i in NOT_HERE)) : CI_SUBSET;
    if (FULL) console.log(`full rehearsal without: ${Object.entries(NOT_HERE).map(([i, why]) => `${i} (${why})`).join(", ")}`);
    // "Today" is the version day 1's manual run chose by the runner's clock, and "tomorrow" the day after it: taken
    // from the clock when the file loads, a run that crossed midnight before day 1 tagged its manual run's version
    // again as "tomorrow" (a template of that version, with other bytes, was still on the node).
    let today = dateVersion(new Date());
    let tomorrow = dateVersion(new Date(Date.now() + 86_400_000));

    /** The environment the test adds to a runner's: the test registry's CA, fast GitHub retries, the per-user cache. */
    const extraEnv = () => ({ SSL_CERT_FILE: registry.caBundle!, IMAGE_FACTORY_GITHUB_RETRY_MS: "20", IMAGE_FACTORY_CACHE: CACHE_ROOT });

    /** Runs one CI job, timed; fails the test with its output unless it exits as expected. */
    async function job(label: string, spec: Omit<JobSpec, "extraEnv">, expectExit = 0): Promise<JobResult> {
        const r = await runJob(origin, { ...spec, extraEnv: extraEnv() }, contexts);
        times.push([label, r.seconds]);
        const up = /ci: pulumi up \S+: (\d+) s/.exec(r.output)?.[1];
        console.log(`rehearsal step: ${label}: ${r.seconds.toFixed(1)} s${up ? ` (pulumi up ${up} s)` : ""} (exit ${r.exitCode})`);
        assert.equal(r.exitCode, expectExit, `${label}: exit ${r.exitCode}:\n${r.output.slice(-8000)}`);
        return r;
    }
    const tagRun = (stack: string, tag: string, sha: string) =>
        ({ workflow: "up-stack.yml", job: "up", event: "push" as const, ref: `refs/tags/${tag}`, sha, inputs: { stack, max_pass: "" } });

    /** pulumi with the labs' backend, in a clone of origin (outputs, state, destroy: what an operator runs by hand). */
    async function pulumi(args: string[], opts: { reject?: boolean } = {}) {
        const r = await execa("pulumi", [...args, "--non-interactive"], {
            cwd: origin.work, reject: false, all: true,
            // The checkout's PULUMI_HOME, where setup installed the proxmoxve plugin (a destroy needs it).
            env: { ...s3.env, PULUMI_BACKEND_URL: s3.url, PULUMI_CONFIG_PASSPHRASE: passphrase, PULUMI_HOME: process.env.PULUMI_HOME ?? path.join(REPO_ROOT, ".cache", "pulumi-home"), ...extraEnv() },
        });
        if (opts.reject !== false) assert.equal(r.exitCode, 0, `pulumi ${args.join(" ")}:\n${r.all}`);
        return r;
    }
    const outputs = async (stack: string) => (JSON.parse((await pulumi(["stack", "output", "--json", "--stack", stack])).stdout) as { images?: Record<string, ImageOut> }).images ?? {};
    const sha256 = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    const head = async () => (await origin.git(["rev-parse", "HEAD"])).stdout.trim();

    /** When the build of this image with these bytes ran: its build log's first and "built in" lines (ms). */
    function buildSpan(name: string, sha: string): { start: number; end: number } {
        const dir = path.join(testWorkDir(), "builds", name);
        for (const key of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
            const result = path.join(dir, key, "result.json");
            if (!fs.existsSync(result) || (JSON.parse(fs.readFileSync(result, "utf8")) as { sha256: string }).sha256 !== sha) continue;
            const lines = fs.readFileSync(path.join(dir, key, "build.log"), "utf8").split("\n");
            const at = (line: string | undefined) => Date.parse(line?.split(" ")[0] ?? "");
            const span = { start: at(lines[0]), end: at(lines.find((l) => / built in /.test(l))) };
            assert.ok(Number.isFinite(span.start) && Number.isFinite(span.end), `${name}: no times in its build log`);
            return span;
        }
        throw new Error(`${name}: no build with sha256 ${sha} under ${dir}`);
    }

    before(async () => {
        registry = await startRegistry({ auth: ghcr, tls: true });
        gh = await startFakeGithub({ token: githubToken, repos: [["deevnet", "images"]] });
        // Each lab's node with a privilege-separated factory@pve!ci token holding exactly the README's privileges for
        // where that lab works, and `import` added to `local`'s content (the operator's first-run steps).
        home = await startFakePve({ node: "pve1" });
        mobile = await startFakePve({ node: "pvem1", zfsStorages: ["local-zfs"], placement: { diskStorage: "local-zfs", bridge: "vmbr1" } });
        s3 = await startS3Backend();
        scratch = fs.mkdtempSync(path.join(os.tmpdir(), "if-rehearsal-"));
        const storeRoot = path.join(scratch, "artifacts");
        fs.mkdirSync(storeRoot, { recursive: true });
        store = createArtifactServer({ root: storeRoot });
        await new Promise<void>((r) => store.listen(0, "127.0.0.1", r));
        const key = path.join(scratch, "bootstrap_ed25519");
        await execa("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
        endpoints = {
            storeRoot, storeUrl: `http://127.0.0.1:${(store.address() as { port: number }).port}`, registry: registry.host, githubApi: gh.url,
            workDir: testWorkDir(), evidenceDir: path.join(scratch, "evidence"), packerSshKeyFile: key, images,
        };
        // The lab's repository as the operator has it on the first day: the lab files with this machine's endpoints
        // and the lab's bootstrap key (the operator's first-run steps), committed.
        origin = await makeOrigin({
            "Pulumi.dvnt.yaml": stringify({ config: rehearsalConfig("dvnt", { ...endpoints, proxmoxUrl: home.url }) }),
            "Pulumi.dvntm.yaml": stringify({ config: rehearsalConfig("dvntm", { ...endpoints, proxmoxUrl: mobile.url }) }),
        });
        contexts = {
            actor: ghcr.user, repository: "deevnet/image-factory",
            vars: { PULUMI_BACKEND_URL: s3.url, OCI_REGISTRY: "" },
            secrets: {
                GITHUB_TOKEN: githubToken, GHCR_TOKEN: ghcr.password, PULUMI_CONFIG_PASSPHRASE: passphrase,
                PULUMI_BACKEND_ACCESS_KEY_ID: s3.env.AWS_ACCESS_KEY_ID, PULUMI_BACKEND_SECRET_ACCESS_KEY: s3.env.AWS_SECRET_ACCESS_KEY,
                PROXMOX_API_TOKEN_dvnt: home.token, PROXMOX_API_TOKEN_dvntm: mobile.token,
            },
        };
    });
    after(async () => {
        if (times.length) console.log(`rehearsal step times (s):\n${times.map(([l, s]) => `  ${s.toFixed(1).padStart(7)}  ${l}`).join("\n")}`);
        await new Promise<void>((r) => (store ? store.close(() => r()) : r()));
        await Promise.all([registry?.stop(), gh?.close(), home?.close(), mobile?.close(), s3?.stop()]);
        origin?.remove();
        if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    });

    it("the rehearsal configs are the lab files with only endpoints, paths, the lab's key (and, for the CI subset, dvnt's image list) changed", () => {
        for (const stack of ["dvnt", "dvntm"] as const) {
            const allowed: string[] = [...SUBSTITUTED, ...(stack === "dvnt" && !FULL ? ["factory:images"] : [])];
            const rehearsed = rehearsalConfig(stack, endpoints);
            const diff = configDifferences(labConfig(stack), rehearsed);
            assert.ok(diff.includes("factory:bootstrapUser.sshAuthorizedKeys"), `${stack}: the placeholder key must be replaced`);
            for (const d of diff) assert.ok(allowed.some((k) => d === k || d.startsWith(`${k}.`)), `${stack}: ${d} differs from the lab file`);
            // The image list: the lab's own, or for dvnt's CI subset exactly the lab's images that are in it, in the lab's order.
            const lab = labConfig(stack)["factory:images"] as string[];
            const expected = stack === "dvnt" && !FULL ? lab.filter((i) => CI_SUBSET.includes(i)) : lab;
            assert.deepEqual(rehearsed["factory:images"], expected, `${stack}: the rehearsed images`);
            if (stack === "dvnt") assert.deepEqual([...expected].sort(), [...images].sort(), "dvnt rehearses the images this test checks");
        }
    });

    it("day 1, by hand: a manual run of dvnt with max_pass 1 makes the stack in S3 and stops at pass 1", async () => {
        const r = await job("manual dvnt max_pass=1", { workflow: "up-stack.yml", job: "up", event: "workflow_dispatch", ref: "refs/heads/main", sha: await head(), inputs: { stack: "dvnt", max_pass: "1" } });
        assert.match(r.output, /stack dvnt does not exist in s3:\/\/image-factory-state: creating it/);
        assert.match(r.output, /lab\.check dvnt: ready/);
        const out = await outputs("dvnt");
        assert.deepEqual(Object.keys(out).sort(), images.filter((i) => PASS_1.includes(i)).sort());
        assert.ok(Object.values(out).every((i) => i.pass === 1));
        const chosen = Object.values(out)[0].version;
        assert.match(chosen, /^v\d{4}\.\d{2}\.\d{2}$/, "a manual run on a new stack takes the day's version");
        const [y, m, d] = chosen.slice(1).split(".").map(Number);
        today = chosen;
        tomorrow = dateVersion(new Date(Date.UTC(y, m - 1, d) + 86_400_000));
        assert.doesNotMatch(r.output, /debian-12-platform/, "nothing of pass 2 ran");
        assert.equal(r.status, "", `the job left its clone dirty:\n${r.status}`);
        const log = await origin.mainLog();
        assert.equal(log[0], "Release metadata of a manual run (dvnt)");
        assert.match(r.summary, /### image-factory dvnt\n/);
    });

    let firstTag: string;
    it(`the first tag: dvnt builds every image and publishes to every target, then dvntm registers dvnt's images; each clone is left clean and origin gets the release metadata once`, async () => {
        await origin.git(["pull", "-q", "origin", "main"]);
        await origin.git(["tag", today]);
        await origin.git(["push", "-q", "origin", today]);
        firstTag = await head();
        const before = (await origin.mainLog()).length;
        const dvnt = await job(`tag ${today}: up dvnt`, tagRun("dvnt", today, firstTag));
        const dvntm = await job(`tag ${today}: up dvntm`, tagRun("dvntm", today, firstTag));
        for (const r of [dvnt, dvntm]) assert.equal(r.status, "", `the job left its clone dirty:\n${r.status}`);
        const log = await origin.mainLog();
        assert.deepEqual(log.slice(0, log.length - before), [`Release metadata of ${today} (dvnt)`], "one metadata commit: dvnt's (dvntm publishes no release)");
        assert.ok(await origin.show(`releases/${today}.json`) !== undefined || (await origin.show("docs/releases.md") ?? "").includes(today));
        assert.doesNotMatch(await origin.show("Pulumi.dvnt.yaml") ?? "", /factory:version|encryptionsalt/, "the run's values never reach the tracked stack file");

        const out = await outputs("dvnt");
        assert.deepEqual(Object.keys(out).sort(), [...images].sort());
        // Each image's bytes on every target its recipe names (every one is configured in the rehearsal): a missing
        // output fails here, rather than leaving that target unchecked.
        const checked = { store: 0, oci: 0, release: 0 };
        for (const [name, img] of Object.entries(out)) {
            assert.equal(img.version, today, `${name}: the tag names the version`);
            const targets = loadRecipe(name).targets;
            for (const [t, field] of [["store", img.storePath], ["oci", img.ociRef], ["release", img.releaseAssetUrl]] as const) {
                assert.equal(!!field, targets.includes(t), `${name}: its ${t} output ${field ? "is there, but the recipe does not name the target" : "is missing"}`);
                if (field) checked[t]++;
            }
            if (img.storePath) assert.equal(sha256(img.storePath), img.sha256, `${name}: store`);
            if (img.ociRef) {
                const pulled = fs.mkdtempSync(path.join(scratch, "pull-"));
                await execa(orasBinary(), ["pull", "--username", ghcr.user, "--password-stdin", "-o", pulled, img.ociRef.replace(/^oci:\/\//, "")],
                    { input: ghcr.password, env: { SSL_CERT_FILE: registry.caBundle! } });
                const file = fs.readdirSync(pulled).find((f) => !f.startsWith("."))!;
                assert.equal(sha256(path.join(pulled, file)), img.sha256, `${name}: oci`);
            }
            if (img.releaseAssetUrl) {
                const bytes = gh.assetBytes("deevnet", "images", img.version, path.basename(new URL(img.releaseAssetUrl).pathname));
                assert.ok(bytes, `${name}: no release asset`);
                assert.equal(crypto.createHash("sha256").update(bytes).digest("hex"), img.sha256, `${name}: release`);
            }
        }
        assert.deepEqual(checked, {
            store: images.filter((i) => loadRecipe(i).targets.includes("store")).length,
            oci: images.filter((i) => loadRecipe(i).targets.includes("oci")).length,
            release: images.filter((i) => loadRecipe(i).targets.includes("release")).length,
        });
        assert.ok(checked.store > 0 && checked.oci > 0 && checked.release > 0, `bytes checked on every kind of target: ${JSON.stringify(checked)}`);
        assert.ok(out["nocloud-seed-iso"].ociRef && !out["nocloud-seed-iso"].proxmox, "the seed ISO goes to store and OCI only");
        // Issue 20: a pass waits only for what it depends on; only a template, what brings an image into the lab,
        // waits for the pass before (the pass-1 images were built on day 1 here, so the spans are not compared).
        const state = JSON.parse((await pulumi(["stack", "export", "--stack", "dvnt"])).stdout) as { deployment: { resources?: Array<{ urn: string; dependencies?: string[] }> } };
        const resources = state.deployment.resources ?? [];
        const pass1Deps = (suffix: string) => {
            const r = resources.find((x) => x.urn.endsWith(`::${suffix}`));
            assert.ok(r, `no ${suffix} in dvnt's state`);
            return (r.dependencies ?? []).filter((u) => /::(debian-12-minimal|nocloud-seed-iso)-/.test(u));
        };
        assert.deepEqual(pass1Deps("debian-12-platform-build"), [], "the pass-2 build waits for pass-1 resources it does not use");
        assert.ok(pass1Deps("debian-12-platform-proxmox").some((u) => u.endsWith("::debian-12-minimal-proxmox-template")), "the pass-2 template waits for pass 1's template");
        const downloads = await home.downloads();
        for (const name of ["debian-12-minimal", "debian-12-platform"]) {
            const d = downloads.filter((x) => x.filename.startsWith(`${name}-`)).pop();
            assert.equal(d?.sha256, out[name].sha256, `${name}: the home node fetched other bytes`);
            const cfg = await home.api<Record<string, unknown>>("GET", `/nodes/pve1/qemu/${out[name].proxmox!.vmid}/config`);
            assert.equal(cfg.template, 1);
        }
        const release = gh.releases("deevnet", "images").filter((r) => r.tag_name === today);
        assert.equal(release.filter((r) => !r.draft).length, 1, "one published release for the tag");
        assert.equal(gh.releases("deevnet", "images").filter((r) => r.draft).length, 0, "no draft left behind");
        const released = Object.entries(out).filter(([, img]) => img.releaseAssetUrl).map(([name]) => name).sort();
        assert.deepEqual([...parseNotes(release[0].body).keys()].sort(), released);
        for (const name of released) assert.match(out[name].releaseAssetUrl!, new RegExp(`/releases/download/${today}/`));

        // dvntm read dvnt through the S3 backend's StackReference and built nothing.
        const m = await outputs("dvntm");
        for (const name of ["debian-12-minimal", "debian-12-platform"]) {
            assert.equal(m[name].reusedFrom, "organization/image-factory/dvnt");
            assert.equal(m[name].sha256, out[name].sha256);
            assert.equal(m[name].proxmox?.node, "pvem1");
            const d = (await mobile.downloads()).filter((x) => x.filename.startsWith(`${name}-`)).pop();
            assert.equal(d?.url, out[name].releaseAssetUrl, `${name}: the mobile node must download from the release asset`);
            assert.equal(d?.sha256, out[name].sha256);
        }
        const mstate = JSON.parse((await pulumi(["stack", "export", "--stack", "dvntm"])).stdout) as { deployment: { resources?: Array<{ type: string }> } };
        assert.equal((mstate.deployment.resources ?? []).some((r) => r.type.endsWith(":ImageBuild")), false, "dvntm builds nothing");
    });

    it("the same tag again: both stacks change nothing, dvnt's up takes seconds, and origin gets no commit", async () => {
        const before = await origin.mainLog();
        const dvnt = await job(`tag ${today} again: up dvnt`, tagRun("dvnt", today, firstTag));
        const dvntm = await job(`tag ${today} again: up dvntm`, tagRun("dvntm", today, firstTag));
        assert.deepEqual(await origin.mainLog(), before, "a re-run of the tag commits nothing");
        assert.match(dvnt.output, /no release metadata changed/);
        const upS = Number(/ci: pulumi up dvnt: (\d+) s/.exec(dvnt.output)?.[1]);
        assert.ok(upS <= 15, `a no-op up of dvnt (${images.length} images) took ${upS} s; the goal is 15 s`);
        for (const r of [dvnt, dvntm]) {
            assert.match(r.output, /Resources:\s+\d+ unchanged/);
            assert.doesNotMatch(r.output, /\b\d+ (created|updated|replaced|deleted)\b/, "the same tag changes nothing");
        }
    });

    let prCommit: string;
    it("a pull request that changes the pass-2 recipe: each stack's preview job writes a summary and a short comment: platform rebuilds, the rest does not", async () => {
        await origin.git(["pull", "-q", "origin", "main"]);
        await origin.git(["checkout", "-q", "-b", "platform-change"]);
        fs.appendFileSync(path.join(origin.work, "images", "debian-12-platform", "playbook.yml"), "# rehearsal: a recipe change\n");
        await origin.git(["commit", "-q", "-am", "platform: a recipe change"]);
        await origin.git(["push", "-q", "origin", "platform-change"]);
        prCommit = await head();
        const comments: Record<string, string> = {};
        for (const stack of ["dvnt", "dvntm"]) {
            const r = await job(`pull request: preview ${stack}`, { workflow: "preview.yml", job: "preview", event: "pull_request", ref: "refs/pull/1/merge", sha: prCommit, matrix: { stack } });
            assert.equal(r.status, "");
            assert.ok(r.outputs.comment_file && fs.existsSync(r.outputs.comment_file), "the comment body for the workflow's comment step");
            comments[stack] = fs.readFileSync(r.outputs.comment_file, "utf8");
            assert.equal(r.summary, comments[stack], "the job summary shows what the comment says");
            assert.ok(comments[stack].length < 8000, `a short comment (${comments[stack].length} characters)`);
        }
        console.log(`      dvnt's comment:\n${comments.dvnt.replace(/^/gm, "        ")}`);
        const row = (stack: string, image: string) => comments[stack].split("\n").find((l) => l.startsWith(`| ${image} |`)) ?? "";
        assert.match(row("dvnt", "debian-12-platform"), /\| \*\*rebuilds\*\* `[0-9a-f]{12}` \(was `[0-9a-f]{12}`\) \| the next tag's \| gate \(.*\), store \(.*\), oci \(.*\), release \(.*\), proxmox \(.*\) \|$/);
        // Its release record may change: the release it shares with platform is published again (its URLs are unknown
        // until then), which a preview can only show as a possible change.
        assert.match(row("dvnt", "debian-12-minimal"), new RegExp(`\\| unchanged \`[0-9a-f]{12}\` \\| ${today.replace(/\./g, "\\.")} \\| (—|release \\(record\\)) \\|$`));
        assert.match(row("dvnt", "nocloud-seed-iso"), /\| unchanged `[0-9a-f]{12}` \|/);
        assert.match(row("dvntm", "debian-12-platform"), /reused from another stack/);
    });

    it("a second tag a day later: every image rebuilt with the new version (it is part of each image), platform with the change; the changelog on origin lists both tags", async () => {
        // The pull request merges (fast-forward onto main), and the next day's tag is pushed.
        await origin.git(["checkout", "-q", "main"]);
        await origin.git(["merge", "-q", "--ff-only", "platform-change"]);
        await origin.git(["push", "-q", "origin", "main"]);
        await origin.git(["tag", tomorrow]);
        await origin.git(["push", "-q", "origin", tomorrow]);
        const before = await outputs("dvnt");
        const sha = await head();
        await job(`tag ${tomorrow}: up dvnt`, tagRun("dvnt", tomorrow, sha));
        await job(`tag ${tomorrow}: up dvntm`, tagRun("dvntm", tomorrow, sha));
        const after = await outputs("dvnt");
        for (const name of images) {
            assert.equal(after[name].version, tomorrow, `${name}: the tag names the version`);
            assert.notEqual(after[name].sha256, before[name].sha256, `${name}: its build.json names the new version, so its bytes differ`);
        }
        const changelog = await origin.show("docs/releases.md") ?? "";
        assert.ok(changelog.includes(tomorrow) && changelog.includes(today), `docs/releases.md on origin lists both tags:\n${changelog.slice(0, 2000)}`);
        assert.ok(changelog.indexOf(tomorrow) < changelog.indexOf(today), "newest first");
        assert.equal((await origin.mainLog())[0], `Release metadata of ${tomorrow} (dvnt)`);
        const m = await outputs("dvntm");
        assert.equal(m["debian-12-platform"].sha256, after["debian-12-platform"].sha256);
    });

    it("origin refuses what branch protection refuses: a forced, non-fast-forward push to main", async () => {
        await origin.git(["checkout", "-q", "--detach", firstTag]);
        await origin.git(["commit", "-q", "--allow-empty", "-m", "a rewrite of history"]);
        const r = await origin.git(["push", "--force", "origin", "HEAD:main"], { reject: false });
        assert.notEqual(r.exitCode, 0);
        assert.match(r.all ?? "", /GH006: Protected branch update failed for refs\/heads\/main: cannot force-push/);
        await origin.git(["checkout", "-q", "main"]);
    });

    it("two ups of one stack at once: the second is refused by the backend's lock, naming what to do; `pulumi cancel` clears a dead run's lock", async () => {
        const sha = await head();
        // The first run is frozen while it holds the lock (as a run still building would hold it), then killed: its lock stays.
        const lockDir = path.join(s3.dir, "data", s3.bucket, ".pulumi", "locks", "organization", "image-factory", "dvnt");
        let holder: execa.ExecaChildProcess | undefined;
        const first = runJob(origin, { ...tagRun("dvnt", tomorrow, sha), extraEnv: extraEnv(), onStart: (p) => { holder = p; } }, contexts);
        const deadline = Date.now() + 120_000;
        while (!(fs.existsSync(lockDir) && fs.readdirSync(lockDir).length > 0)) {
            assert.ok(Date.now() < deadline, "the first run never took the lock");
            await new Promise((r) => setTimeout(r, 100));
        }
        const pids = (await execa("pgrep", ["-f", "pulumi up --stack dvnt"], { reject: false })).stdout.split("\n").filter(Boolean).map(Number);
        for (const pid of pids) process.kill(pid, "SIGKILL");
        holder?.kill("SIGKILL");
        await first;
        const second = await job("up dvnt while a dead run's lock is held", tagRun("dvnt", tomorrow, sha), 1);
        assert.match(second.output, /stack dvnt is locked by another update \(another runner, or one that was killed\)\. Wait for it; if no update runs any more, `pulumi cancel --stack dvnt` with the same PULUMI_BACKEND_URL removes the lock/);
        await pulumi(["cancel", "--stack", "dvnt", "--yes"]);
        const third = await job("up dvnt after pulumi cancel", tagRun("dvnt", tomorrow, sha));
        assert.equal(third.status, "");
    });

    it("destroy dvntm, then dvnt: OCI artifacts, releases and templates stay, as the README promises", async () => {
        const dvnt = await outputs("dvnt");
        const vmsHome = (await home.api<Array<{ vmid: number }>>("GET", "/nodes/pve1/qemu")).map((v) => v.vmid).sort();
        const vmsMobile = (await mobile.api<Array<{ vmid: number }>>("GET", "/nodes/pvem1/qemu")).map((v) => v.vmid).sort();
        const t0 = Date.now();
        // By hand in the operator's clone (no workflow destroys a lab); its stack files are restored afterwards, as
        // `pulumi destroy` may write the secrets provider's salt into them.
        await pulumi(["destroy", "--yes", "--stack", "dvntm", "--skip-preview"]);
        await pulumi(["destroy", "--yes", "--stack", "dvnt", "--skip-preview"]);
        await origin.git(["checkout", "--", "Pulumi.dvnt.yaml", "Pulumi.dvntm.yaml"]);
        times.push(["destroy dvntm, dvnt", (Date.now() - t0) / 1000]);
        assert.deepEqual((await home.api<Array<{ vmid: number }>>("GET", "/nodes/pve1/qemu")).map((v) => v.vmid).sort(), vmsHome);
        assert.deepEqual((await mobile.api<Array<{ vmid: number }>>("GET", "/nodes/pvem1/qemu")).map((v) => v.vmid).sort(), vmsMobile);
        const releases = gh.releases("deevnet", "images").filter((r) => !r.draft);
        // Both tags this test published (today's and tomorrow's), each with its assets, are still there.
        assert.deepEqual(releases.map((r) => r.tag_name).sort(), [today, tomorrow].sort());
        assert.ok(releases.every((r) => r.assets.length > 0), "every release keeps its assets");
        const pushed = Object.values(dvnt).filter((img) => img.ociRef);
        assert.ok(pushed.length > 0, "dvnt pushed OCI artifacts to check");
        for (const img of pushed) {
            await execa(orasBinary(), ["manifest", "fetch", "--username", ghcr.user, "--password-stdin", img.ociRef!.replace(/^oci:\/\//, "")],
                { input: ghcr.password, env: { SSL_CERT_FILE: registry.caBundle! } });
        }
    });
});
