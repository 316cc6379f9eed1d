// @slow: the lab rehearsal (`make rehearse`): dvnt and dvntm run for real on this machine, every lab endpoint on
// loopback and nothing else changed: the artifact store over HTTP, an OCI registry with TLS (a CA made for the run)
// and htpasswd auth, the GitHub fake, and one Proxmox VE API per lab (fakepve: pve1 at home, pvem1 on the road).
// Stack names stay dvnt and dvntm in one file backend, so dvntm's StackReference resolves as in the lab.
//
// CI runs a subset of dvnt's images (a pass-1 qcow2, the NoCloud seed ISO and a pass-2 image, every target of
// each) with dvntm reusing them. IMAGE_FACTORY_REHEARSAL=full runs all nine of dvnt's images, plus a new day's
// version (opt-in: builder node, Pi images; about 30 minutes).
import { strict as assert } from "node:assert";
import execa from "execa";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import type * as http from "node:http";
import * as path from "node:path";
import { createArtifactServer } from "../../lib/publish/artifactServer";
import { orasBinary } from "../../lib/publish/oci";
import { parseNotes } from "../../providers/githubReleasePublication";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";
import { startFakePve, type FakePve } from "../helpers/fakePve";
import { configDifferences, initLabStack, labConfig, rehearsalConfig, SUBSTITUTED, type LabEndpoints } from "../helpers/labStack";
import { testWorkDir } from "../helpers/localStack";
import { TestProject } from "../helpers/project";
import { startRegistry, type TestRegistry } from "../helpers/registry";

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

interface ImageOut { version: string; sha256: string; size: number; qcow2Url?: string; ociRef?: string; ociLayerDigest?: string; releaseAssetUrl?: string; storePath?: string; proxmox?: { node: string; vmid: number; name: string } | null; reusedFrom?: string }

describe(`lab rehearsal: dvnt and dvntm for real on loopback (${FULL ? "full" : "CI subset"}) @slow`, function () {
    this.timeout(FULL ? 7_200_000 : 3_600_000);
    const githubToken = "ghp_" + "RehearsalFakeToken0123456789abcdefABCD";
    const ghcr = { user: "deevnet-ci", password: "ghcr-" + "rehearsal-token-0123456789" };
    let registry: TestRegistry;
    let gh: FakeGithub;
    let home: FakePve;
    let mobile: FakePve;
    let store: http.Server;
    let project: TestProject;
    let endpoints: LabEndpoints;
    const times: Array<[string, number]> = [];
    const images = FULL ? (labConfig("dvnt")["factory:images"] as string[]).filter((i) => !(i in NOT_HERE)) : CI_SUBSET;
    if (FULL) console.log(`full rehearsal without: ${Object.entries(NOT_HERE).map(([i, why]) => `${i} (${why})`).join(", ")}`);

    /** Runs a pulumi command, timed; fails the test with its output unless it exits 0. */
    async function step(label: string, args: string[]) {
        const t0 = Date.now();
        const r = await project.pulumi(args, { reject: false });
        times.push([label, (Date.now() - t0) / 1000]);
        console.log(`rehearsal step: ${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s (exit ${r.exitCode})`); // as it goes: a long run cut short keeps its times
        assert.equal(r.exitCode, 0, `${label} failed:\n${r.all.slice(-6000)}`);
        return r;
    }
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
    const outputs = async (stack: string) => ((await project.outputs(stack)).images ?? {}) as Record<string, ImageOut>;
    const sha256 = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    /** Resources a preview would change (not `same`, not reads), by URN. */
    async function changes(stack: string): Promise<string[]> {
        const r = await project.pulumi(["preview", "--stack", stack, "--json"], { reject: false });
        const doc = JSON.parse(r.stdout) as { steps?: Array<{ op: string; urn: string }>; diagnostics?: Array<{ message: string }> };
        assert.equal(r.exitCode, 0, `preview --json failed: ${(doc.diagnostics ?? []).map((d) => d.message).join("")}`);
        const steps = doc.steps ?? [];
        return steps.filter((s) => s.op !== "same" && s.op !== "read").map((s) => `${s.op} ${s.urn}`);
    }

    before(async () => {
        registry = await startRegistry({ auth: ghcr, tls: true });
        gh = await startFakeGithub({ token: githubToken, repos: [["deevnet", "images"]] });
        home = await startFakePve({ node: "pve1" });
        mobile = await startFakePve({ node: "pvem1", zfsStorages: ["local-zfs"], token: "root@pam!mobile=" + "mobile-secret-0123456789" });
        project = TestProject.create({ env: { SSL_CERT_FILE: registry.caBundle!, GHCR_USERNAME: ghcr.user, IMAGE_FACTORY_GITHUB_RETRY_MS: "20" } });
        const storeRoot = path.join(project.dir, "artifacts");
        fs.mkdirSync(storeRoot, { recursive: true });
        store = createArtifactServer({ root: storeRoot });
        await new Promise<void>((r) => store.listen(0, "127.0.0.1", r));
        const key = path.join(project.dir, "bootstrap_ed25519");
        await execa("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
        endpoints = {
            storeRoot, storeUrl: `http://127.0.0.1:${(store.address() as { port: number }).port}`, registry: registry.host, githubApi: gh.url,
            workDir: testWorkDir(), evidenceDir: path.join(project.dir, "evidence"), packerSshKeyFile: key, images,
        };
        await initLabStack(project, "dvnt", { ...endpoints, proxmoxUrl: home.url }, { githubToken, ghcrToken: ghcr.password, proxmoxApiToken: home.token });
        await initLabStack(project, "dvntm", { ...endpoints, proxmoxUrl: mobile.url }, { proxmoxApiToken: mobile.token });
    });
    after(async () => {
        if (times.length) console.log(`rehearsal step times (s):\n${times.map(([l, s]) => `  ${s.toFixed(1).padStart(7)}  ${l}`).join("\n")}`);
        await new Promise<void>((r) => (store ? store.close(() => r()) : r()));
        project?.remove();
        await Promise.all([registry?.stop(), gh?.close(), home?.close(), mobile?.close()]);
    });

    it("the rehearsal configs are the lab files with only endpoints, paths (and, for the CI subset, the image list) changed", () => {
        for (const stack of ["dvnt", "dvntm"] as const) {
            const allowed: string[] = [...SUBSTITUTED, ...(images && stack === "dvnt" ? ["factory:images"] : [])];
            for (const d of configDifferences(labConfig(stack), rehearsalConfig(stack, endpoints))) {
                assert.ok(allowed.some((k) => d === k || d.startsWith(`${k}.`)), `${stack}: ${d} differs from the lab file`);
            }
        }
    });

    it("dvnt: preview with the policy pack, then up builds, stores, pushes (TLS, auth), releases and makes templates", async () => {
        await step("preview dvnt --policy-pack", ["preview", "--stack", "dvnt", "--policy-pack", "policy"]);
        await step("up dvnt", ["up", "--yes", "--stack", "dvnt", "--skip-preview"]);
        const out = await outputs("dvnt");
        const built = images ?? (labConfig("dvnt")["factory:images"] as string[]);
        assert.deepEqual(Object.keys(out).sort(), [...built].sort());
        for (const [name, img] of Object.entries(out)) {
            if (img.storePath) assert.equal(sha256(img.storePath), img.sha256, `${name}: store`);
            if (img.ociRef) {
                const pulled = fs.mkdtempSync(path.join(project.dir, "pull-"));
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
        assert.ok(out["nocloud-seed-iso"].ociRef && !out["nocloud-seed-iso"].proxmox, "the seed ISO goes to store and OCI only");
        // Issue 20: a pass waits only for what it depends on. The pass-2 image has no base in pass 1, so it was built
        // beside the pass-1 image (their build logs' spans overlap: a log starts once the budget admits the build);
        // only its Proxmox template, what brings it into the lab, waits for all of pass 1.
        // The full rehearsal's builder-node Packer VM takes both cores of a 2-core machine for half an hour, so the build
        // budget (rightly) admits nothing beside it there; the dependency check below holds either way.
        const [minimal, platform] = [buildSpan("debian-12-minimal", out["debian-12-minimal"].sha256), buildSpan("debian-12-platform", out["debian-12-platform"].sha256)];
        if (!FULL) assert.ok(minimal.start < platform.end && platform.start < minimal.end,
            `the two builds ran one after the other: debian-12-minimal ${new Date(minimal.start).toISOString()}–${new Date(minimal.end).toISOString()}, ` +
            `debian-12-platform ${new Date(platform.start).toISOString()}–${new Date(platform.end).toISOString()}`);
        const resources = ((await project.exportState("dvnt")).deployment.resources ?? []) as Array<{ urn: string; dependencies?: string[] }>;
        const pass1Deps = (suffix: string) => {
            const r = resources.find((x) => x.urn.endsWith(`::${suffix}`));
            assert.ok(r, `no ${suffix} in dvnt's state`);
            return (r.dependencies ?? []).filter((u) => /::(debian-12-minimal|nocloud-seed-iso)-/.test(u));
        };
        assert.deepEqual(pass1Deps("debian-12-platform-build"), [], "the pass-2 build waits for pass-1 resources it does not use");
        assert.ok(pass1Deps("debian-12-platform-proxmox").some((u) => u.endsWith("::debian-12-minimal-proxmox-template")),
            "the pass-2 template does not wait for pass 1's template");
        const downloads = await home.downloads();
        for (const name of ["debian-12-minimal", "debian-12-platform"]) {
            const d = downloads.find((x) => x.filename.startsWith(`${name}-`));
            assert.equal(d?.sha256, out[name].sha256, `${name}: the home node fetched other bytes`);
            const cfg = await home.api<Record<string, unknown>>("GET", `/nodes/pve1/qemu/${out[name].proxmox!.vmid}/config`);
            assert.equal(cfg.template, 1);
        }
        const releases = gh.releases("deevnet", "images");
        assert.equal(releases.filter((r) => !r.draft).length, 1, "one published release for the version");
        assert.equal(releases.filter((r) => r.draft).length, 0, "no draft left behind");
        // One release for the tag, published once, its notes listing every image in it; the URLs are the tag's.
        const released = Object.entries(out).filter(([, img]) => img.releaseAssetUrl).map(([name]) => name).sort();
        assert.deepEqual([...parseNotes(releases[0].body).keys()].sort(), released);
        assert.equal(gh.requests.filter((r) => r.method === "PATCH" && /\/releases\/\d+$/.test(r.path)).length, 1, "published exactly once");
        for (const name of released) assert.match(out[name].releaseAssetUrl!, new RegExp(`/releases/download/${out[name].version}/`));
    });

    it("dvntm: preview with the policy pack, then up registers dvnt's images on its own node, downloaded from the release", async () => {
        await step("preview dvntm --policy-pack", ["preview", "--stack", "dvntm", "--policy-pack", "policy"]);
        await step("up dvntm", ["up", "--yes", "--stack", "dvntm", "--skip-preview"]);
        const dvnt = await outputs("dvnt");
        const out = await outputs("dvntm");
        for (const name of ["debian-12-minimal", "debian-12-platform"]) {
            assert.equal(out[name].reusedFrom, "organization/image-factory/dvnt");
            assert.equal(out[name].sha256, dvnt[name].sha256);
            assert.equal(out[name].proxmox?.node, "pvem1");
            const d = (await mobile.downloads()).find((x) => x.filename.startsWith(`${name}-`));
            assert.equal(d?.url, dvnt[name].releaseAssetUrl, `${name}: the mobile node must download from the release asset`);
            assert.equal(d?.sha256, dvnt[name].sha256);
            const cfg = await mobile.api<Record<string, unknown>>("GET", `/nodes/pvem1/qemu/${out[name].proxmox!.vmid}/config`);
            assert.match(String(cfg.scsi0), /^local-zfs:base-/);
        }
        const state = await project.exportState("dvntm");
        assert.equal((state.deployment.resources ?? []).some((r) => String(r.type).endsWith(":ImageBuild")), false, "dvntm builds nothing");
    });

    it("both again: no changes, and a no-op up of dvnt takes seconds", async () => {
        await step("preview dvnt (no-op)", ["preview", "--stack", "dvnt", "--expect-no-changes"]);
        await step("preview dvntm (no-op)", ["preview", "--stack", "dvntm", "--expect-no-changes"]);
        // Issue 20's goal for the lab's no-op up (every image of dvnt in the full rehearsal, the CI subset here).
        const t0 = Date.now();
        await step(`up dvnt (no-op, ${images.length} images)`, ["up", "--yes", "--stack", "dvnt", "--skip-preview", "--expect-no-changes"]);
        const s = (Date.now() - t0) / 1000;
        assert.ok(s <= 15, `a no-op up of dvnt (${images.length} images) took ${s.toFixed(1)} s; the goal is 15 s`);
    });

    it("a changed pass-2 recipe file changes only that image and what depends on it; up rebuilds it", async () => {
        fs.appendFileSync(path.join(project.dir, "images", "debian-12-platform", "playbook.yml"), "# rehearsal: a recipe change\n");
        const changed = await changes("dvnt");
        assert.ok(changed.length > 0, "the change must show");
        const outside = changed.filter((c) => !/debian-12-platform/.test(c) && !/ReleaseMetadata|release-metadata|GithubRelease(Publication)?::github-release/.test(c));
        assert.deepEqual(outside, [], "only debian-12-platform (and the release metadata that lists it) may change");
        const before = await outputs("dvnt");
        await step("up dvnt (platform changed)", ["up", "--yes", "--stack", "dvnt", "--skip-preview"]);
        const after = await outputs("dvnt");
        assert.notEqual(after["debian-12-platform"].sha256, before["debian-12-platform"].sha256);
        assert.equal(after["debian-12-minimal"].sha256, before["debian-12-minimal"].sha256);
        assert.equal(after["debian-12-minimal"].version, before["debian-12-minimal"].version);
        // A second build the same day is a new version: its template goes beside the old one.
        assert.notEqual(after["debian-12-platform"].version, before["debian-12-platform"].version);
        const vms = await home.api<Array<{ vmid: number }>>("GET", "/nodes/pve1/qemu");
        assert.ok(vms.some((v) => v.vmid === before["debian-12-platform"].proxmox!.vmid) && vms.some((v) => v.vmid === after["debian-12-platform"].proxmox!.vmid));
        await step("up dvntm (platform changed)", ["up", "--yes", "--stack", "dvntm", "--skip-preview"]);
        await step("preview dvnt (no-op)", ["preview", "--stack", "dvnt", "--expect-no-changes"]);
    });

    (FULL ? it : it.skip)("a new day's version: new templates beside the old ones, retention applied (full rehearsal)", async () => {
        await project.setConfig("dvnt", "factory:version", "v2099.01.01");
        await step("up dvnt (new version)", ["up", "--yes", "--stack", "dvnt", "--skip-preview"]);
        await step("up dvntm (new version)", ["up", "--yes", "--stack", "dvntm", "--skip-preview"]);
        const out = await outputs("dvntm");
        assert.equal(out["debian-12-minimal"].version, "v2099.01.01");
        const records = ((await project.outputs("dvntm")).proxmox as { templates: Record<string, unknown[]> }).templates;
        assert.ok(records["debian-12-platform"].length <= 2, "dvntm keeps 2");
    });

    it("destroy dvntm, then dvnt: OCI artifacts, releases and templates stay, as the README promises", async () => {
        const dvnt = await outputs("dvnt");
        const vmsHome = (await home.api<Array<{ vmid: number }>>("GET", "/nodes/pve1/qemu")).map((v) => v.vmid).sort();
        const vmsMobile = (await mobile.api<Array<{ vmid: number }>>("GET", "/nodes/pvem1/qemu")).map((v) => v.vmid).sort();
        await step("destroy dvntm", ["destroy", "--yes", "--stack", "dvntm", "--skip-preview"]);
        await step("destroy dvnt", ["destroy", "--yes", "--stack", "dvnt", "--skip-preview"]);
        assert.deepEqual((await home.api<Array<{ vmid: number }>>("GET", "/nodes/pve1/qemu")).map((v) => v.vmid).sort(), vmsHome);
        assert.deepEqual((await mobile.api<Array<{ vmid: number }>>("GET", "/nodes/pvem1/qemu")).map((v) => v.vmid).sort(), vmsMobile);
        const releases = gh.releases("deevnet", "images").filter((r) => !r.draft);
        assert.ok(releases.length >= 1 && releases.every((r) => r.assets.length > 0));
        for (const img of Object.values(dvnt)) {
            if (!img.ociRef) continue;
            await execa(orasBinary(), ["manifest", "fetch", "--username", ghcr.user, "--password-stdin", img.ociRef.replace(/^oci:\/\//, "")],
                { input: ghcr.password, env: { SSL_CERT_FILE: registry.caBundle! } });
        }
    });
});
