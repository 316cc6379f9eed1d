// @slow: `pulumi up` of the local stack interrupted in the middle of each step that moves an image — (a) the build,
// (b) the OCI push, (c) the GitHub asset upload, (d) the store's copy, (e) the Proxmox node's download — once with
// Ctrl-C (SIGINT to the run's whole process group, as a terminal sends it) and once by a power loss (SIGKILL to
// every process of the run at once). Slow steps are made slow for real: a throttling TCP proxy of ours sits between
// the run and the registry, GitHub and the Proxmox node's download; the store is on another file system (a real
// copy), and the run is frozen (SIGSTOP) the moment its `.partial` appears. Nothing is mocked.
// At the interruption: the store serves the whole file or nothing, no published release or registry tag points at
// incomplete content. After the README's recovery (Troubleshooting: `pulumi cancel` for the lock a killed run
// leaves, `pulumi refresh --clear-pending-creates` for the creates it had begun, then `pulumi up`; after Ctrl-C just
// `pulumi up`): the same image, published everywhere, one release per tag and no draft left, no
// `.partial` anywhere, and a preview with no changes.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa, { type ExecaChildProcess } from "execa";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { descendants } from "../../lib/engineWatch";
import { startCutProxy, type CutProxy } from "../helpers/cutProxy";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";
import { startFakePve, type FakePve } from "../helpers/fakePve";
import { localStack, TEST_WORK_DIR, type LocalStack } from "../helpers/localStack";
import { startRegistry, type TestRegistry } from "../helpers/registry";
import { REPO_ROOT } from "../helpers/setup";
import { waitFor } from "../helpers/waitFor";

interface ImageOut {
    version: string; sha256: string; size: number; buildKey: string; storePath: string; qcow2Url: string;
    ociRef: string | null; ociLayerDigest: string | null; releaseAssetUrl: string | null; proxmox: { vmid: number } | null;
}
type Interruption = "ctrl-c" | "power-loss";

const IMAGE = "debian-12-minimal";
const PULUMI = path.join(REPO_ROOT, ".tools", "bin", "pulumi");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls every 2 ms (an interruption point can be brief); gives up as soon as the run ends. */
const untilRunEnds = (run: ExecaChildProcess) => ({ pollMs: 2, stop: () => (run.exitCode !== null ? `the run ended (exit ${run.exitCode})` : undefined) });

/**
 * The run's process tree: the CLI and every descendant. Pulumi starts each plugin (language host, providers) in a
 * process group of its own, so a signal to the CLI's group reaches the CLI only (as a terminal's Ctrl-C does), and a
 * power loss has to be played by signalling the whole tree.
 */
function treePids(root: number): number[] {
    return [root, ...descendants(root)];
}

/** Power loss: every process of the run stops at once (frozen first, so none can react to another's death). */
function powerLoss(root: number): void {
    const pids = treePids(root);
    for (const p of pids) signal(p, "SIGSTOP");
    for (const p of treePids(root)) signal(p, "SIGKILL");
}
function signal(pid: number, sig: NodeJS.Signals): void {
    try {
        process.kill(pid, sig);
    } catch {
        /* already gone */
    }
}

/** Every `.partial` file under the given directories. */
function partials(dirs: string[]): string[] {
    return dirs.filter((d) => fs.existsSync(d)).flatMap((d) => fs.readdirSync(d, { withFileTypes: true, recursive: true })
        .filter((e) => e.name.endsWith(".partial"))
        .map((e) => path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
}

function get(url: string): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
        http.get(url, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c)).on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        }).on("error", reject);
    });
}
const sha256 = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");

describe("interrupted pulumi up: Ctrl-C and power loss in the middle of each step, then the README's recovery @slow", function () {
    this.timeout(3_600_000);
    const token = "ghp_" + "InterruptFakeToken0123456789abcdefAB";
    let registry: TestRegistry;
    let gh: FakeGithub;
    let pve: FakePve;
    let regProxy: CutProxy;
    let ghProxy: CutProxy;
    let storeProxy: CutProxy;
    let env: LocalStack;
    let storeRoot: string;
    let baseline: ImageOut;
    let scenario = 0;
    let ghRepo = "images";
    let ociRepo = "interrupt/s0";

    const image = async () => ((await env.project.outputs("local")).images as Record<string, ImageOut>)[IMAGE];
    const ociConfig = () => JSON.stringify({ registry: regProxy.address, repository: ociRepo, plainHttp: true });
    const releaseConfig = () => JSON.stringify({ owner: "deevnet", repo: ghRepo, apiUrl: `http://127.0.0.1:${ghProxy.port}` });
    const dirsToSweep = () => [storeRoot, path.join(env.project.dir), path.join(TEST_WORK_DIR, "builds", IMAGE)];

    before(async function () {
        registry = await startRegistry();
        const [rh, rp] = registry.host.split(":");
        regProxy = await startCutProxy({ host: rh, port: Number(rp) });
        gh = await startFakeGithub({ token, repos: [["deevnet", "images"]] });
        ghProxy = await startCutProxy({ host: "127.0.0.1", port: Number(new URL(gh.url).port) });
        gh.setPublicUrl(`http://127.0.0.1:${ghProxy.port}`); // upload_url and asset URLs lead through the proxy too
        pve = await startFakePve();
        // The store on a file system of its own (a real copy through .partial, not a hard link of the build): a tmpfs
        // mounted for the test (root, as CI runs), not /dev/shm, which a container may keep at 64 MiB.
        storeRoot = fs.mkdtempSync(path.join(os.tmpdir(), "if-interrupt-store-"));
        const mounted = await execa("mount", ["-t", "tmpfs", "-o", "size=2g", "tmpfs", storeRoot], { reject: false });
        if (mounted.exitCode !== 0) {
            fs.rmSync(storeRoot, { recursive: true, force: true });
            storeRoot = "";
            this.skip(); // not root: no tmpfs of our own, and a store on the builds' file system would hard-link, not copy
        }
        env = await localStack({ storeRoot, env: { GITHUB_TOKEN: token, IMAGE_FACTORY_GITHUB_RETRY_MS: "20" } });
        const storePort = (env.server.address() as { port: number }).port;
        storeProxy = await startCutProxy({ host: "127.0.0.1", port: storePort });
        await env.project.setConfig("local", "factory:artifactStore", JSON.stringify({ root: storeRoot, port: storePort, publicBaseUrl: `http://127.0.0.1:${storeProxy.port}` }));
        await env.project.setConfig("local", "factory:oci", ociConfig());
        await env.project.setConfig("local", "factory:release", releaseConfig());
        await env.project.setConfig("local", "factory:proxmox", JSON.stringify({ endpoint: `${pve.url}/`, insecure: true, node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0", vmidRange: [9000, 9099] }));
        await env.project.setConfig("local", "factory:proxmoxApiToken", pve.token, { secret: true });
        // An undisturbed run first: what every recovery must converge to.
        await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"]);
        baseline = await image();
        assert.ok(baseline.ociRef && baseline.releaseAssetUrl && baseline.proxmox, JSON.stringify(baseline));
    });
    after(async () => {
        await env?.close();
        await Promise.all([regProxy?.close(), ghProxy?.close(), storeProxy?.close()]);
        await Promise.all([gh?.close(), pve?.close(), registry?.stop()]);
        if (storeRoot) {
            await execa("umount", [storeRoot], { reject: false });
            fs.rmSync(storeRoot, { recursive: true, force: true });
        }
    });

    /** What must hold while the run is stopped: whole files or nothing, published things complete. */
    async function assertNothingHalfPublished(at: string): Promise<void> {
        const served = await get(`${env.baseUrl}${new URL(baseline.qcow2Url).pathname}`);
        if (served.status === 200) assert.equal(sha256(served.body), baseline.sha256, `${at}: the store served other bytes than the build's`);
        else assert.equal(served.status, 404, `${at}: the store answered ${served.status}`);
        for (const repo of ["images", ghRepo]) {
            for (const rel of gh.releases("deevnet", repo).filter((r) => !r.draft)) {
                const bytes = gh.assetBytes("deevnet", repo, rel.tag_name, `${IMAGE}-${rel.tag_name}.qcow2`);
                assert.ok(bytes && sha256(bytes) === baseline.sha256, `${at}: published release ${repo}@${rel.tag_name} points at incomplete content`);
            }
        }
        const manifest = await get(`http://${registry.host}/v2/${ociRepo}/manifests/${baseline.version}`);
        if (manifest.status === 200) {
            const layers = (JSON.parse(manifest.body.toString()) as { layers: Array<{ digest: string }> }).layers;
            for (const l of layers) {
                const blob = await get(`http://${registry.host}/v2/${ociRepo}/blobs/${l.digest}`);
                assert.equal(`sha256:${sha256(blob.body)}`, l.digest, `${at}: the registry tag points at an incomplete layer`);
            }
        }
    }

    /** Runs `pulumi up`, interrupts it once `inFlight` holds, checks the moment, recovers as the README says, checks the end. */
    async function interruptAndRecover(step: string, how: Interruption, o: { inFlight: () => boolean; slow?: CutProxy; freezeOnSight?: boolean }): Promise<void> {
        if (o.slow) o.slow.throttle = 2 * 1024 * 1024; // ~70 s for the image: long enough to be caught mid-way
        const run = execa(PULUMI, ["up", "--stack", "local", "--yes", "--skip-preview", "--non-interactive"],
            { cwd: env.project.dir, env: env.project.env, detached: true, reject: false, all: true });
        const pgid = run.pid as number;
        let out = "";
        try {
            await waitFor(`${step} to be in flight`, o.inFlight, 900_000, untilRunEnds(run)).catch(async (e: Error) => {
                const all = (await run).all ?? "";
                const errors = all.split("\n").filter((l) => /error|failed/i.test(l)).slice(0, 20).join("\n");
                throw new Error(`${e.message}; its errors:\n${errors}`);
            });
            if (o.freezeOnSight) for (const p of treePids(pgid)) signal(p, "SIGSTOP"); // hold the step where it is
            await assertNothingHalfPublished(`${how} during ${step}`);
            if (how === "power-loss") {
                powerLoss(pgid);
            } else {
                const tree = treePids(pgid);
                process.kill(-pgid, "SIGINT"); // the terminal's Ctrl-C: the CLI's process group
                if (o.freezeOnSight) for (const p of tree) signal(p, "SIGCONT");
            }
            if (o.slow) o.slow.throttle = 0;
            out = (await run).all ?? "";
            if (process.env.IF_DEBUG_INTERRUPT) fs.writeFileSync(path.join(process.env.IF_DEBUG_INTERRUPT, `${how}-${step.replace(/\W+/g, "-")}.log`), out);
        } finally {
            if (o.slow) o.slow.throttle = 0;
            powerLoss(pgid); // whatever is left of a failed test
        }
        assert.notEqual(run.exitCode, 0, `the run finished before it was interrupted:\n${out.slice(-3000)}`);
        await sleep(1000); // the remote services finish what they were doing (a node's download task, a registry upload)
        await assertNothingHalfPublished(`after ${how} during ${step}`);

        // The README's recovery: a killed run leaves its lock (pulumi cancel); Ctrl-C releases it itself.
        const first = await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"], { reject: false });
        if (how === "power-loss") {
            assert.match(first.all, /the stack is currently locked/, "a killed run leaves the backend's lock");
            await env.project.pulumi(["cancel", "--stack", "local", "--yes"]);
            // Creates the killed run had started are "pending" in the state; whatever they made is found again
            // by the up (uploads skip what is there, the node's file is replaced by name), so they are dropped.
            await env.project.pulumi(["refresh", "--stack", "local", "--yes", "--skip-preview", "--clear-pending-creates"]);
            const up = await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"], { reject: false });
            assert.equal(up.exitCode, 0, `recovery after ${how} during ${step}:\n${up.all.slice(-5000)}`);
        } else {
            assert.equal(first.exitCode, 0, `recovery after ${how} during ${step}:\n${first.all.slice(-5000)}`);
        }

        const now = await image();
        for (const k of ["version", "sha256", "size", "buildKey", "storePath"] as const) assert.equal(now[k], baseline[k], `${k} after recovery`);
        assert.equal(sha256(fs.readFileSync(now.storePath)), baseline.sha256, "the store holds the build's bytes");
        assert.equal(now.ociLayerDigest, `sha256:${baseline.sha256}`);
        assert.ok(now.ociRef?.includes(ociRepo), `${now.ociRef} is not in ${ociRepo}`);
        const releases = gh.releases("deevnet", ghRepo);
        assert.deepEqual(releases.map((r) => [r.tag_name, r.draft]), [[baseline.version, false]], `one published release, no draft: ${JSON.stringify(releases.map((r) => [r.id, r.tag_name, r.draft, r.assets.map((a) => a.name)]))}`);
        assert.deepEqual(releases[0].assets.map((a) => a.name).sort(), [`${IMAGE}-${baseline.version}.qcow2`, `${IMAGE}-${baseline.version}.qcow2.sha256`]);
        assert.equal(sha256(gh.assetBytes("deevnet", ghRepo, baseline.version, `${IMAGE}-${baseline.version}.qcow2`) as Buffer), baseline.sha256);
        const downloads = (await pve.downloads()).filter((d) => d.result === "OK");
        assert.ok(downloads.length > 0 && downloads.every((d) => d.sha256 === baseline.sha256), JSON.stringify(downloads));
        assert.equal((await pve.api<{ template?: number }>("GET", `/nodes/pve1/qemu/${now.proxmox?.vmid}/config`)).template, 1);
        assert.deepEqual(partials(dirsToSweep()), [], "no .partial left behind");
        const state = await env.project.exportState("local");
        assert.deepEqual((state.deployment as { pending_operations?: unknown[] }).pending_operations ?? [], [], "pending operations left in the state");
        await env.project.pulumi(["preview", "--stack", "local", "--expect-no-changes"]);
    }

    /** Re-arms a publishing step for the next scenario without a rebuild: a new registry repository / GitHub repository. */
    async function freshTargets(): Promise<void> {
        scenario++;
        ociRepo = `interrupt/s${scenario}`;
        ghRepo = `images-${scenario}`;
        gh.addRepo("deevnet", ghRepo);
        await env.project.setConfig("local", "factory:oci", ociConfig());
        await env.project.setConfig("local", "factory:release", releaseConfig());
    }

    for (const how of ["ctrl-c", "power-loss"] as const) {
        it(`${how} during the OCI push`, async () => {
            await freshTargets();
            const before = regProxy.up;
            await interruptAndRecover("the OCI push", how, { inFlight: () => regProxy.up - before > 4 * 1024 * 1024, slow: regProxy });
        });

        it(`${how} during the GitHub asset upload`, async () => {
            await freshTargets();
            const before = ghProxy.up;
            await interruptAndRecover("the GitHub upload", how, { inFlight: () => ghProxy.up - before > 4 * 1024 * 1024, slow: ghProxy });
        });

        it(`${how} during the store's copy`, async () => {
            // The stored copy goes away (as if the store's disk had been replaced); refresh forgets it; up copies it again.
            fs.rmSync(path.join(storeRoot, "images", IMAGE, baseline.version), { recursive: true, force: true });
            await env.project.pulumi(["refresh", "--stack", "local", "--yes", "--skip-preview"]);
            const partial = `${baseline.storePath}.partial`;
            await interruptAndRecover("the store's copy", how, { inFlight: () => fs.existsSync(partial), freezeOnSight: true });
        });

        it(`${how} during the Proxmox node's download`, async () => {
            // The node loses its copy and the template (deleted out of band); refresh forgets them; up downloads again.
            const vmid = (await image()).proxmox?.vmid;
            assert.equal(await pve.waitTask(await pve.api<string>("DELETE", `/nodes/pve1/qemu/${vmid}`)), "OK");
            const volid = `local:import/${IMAGE}-${baseline.version}.qcow2`;
            const task = await pve.api<string | null>("DELETE", `/nodes/pve1/storage/local/content/${encodeURIComponent(volid)}`);
            if (task) assert.equal(await pve.waitTask(task), "OK");
            await env.project.pulumi(["refresh", "--stack", "local", "--yes", "--skip-preview"]);
            const before = storeProxy.down;
            await interruptAndRecover("the Proxmox download", how, { inFlight: () => storeProxy.down - before > 4 * 1024 * 1024, slow: storeProxy });
        });
    }
});

describe("interrupted pulumi up during the build: Ctrl-C and power loss, then the README's recovery @slow", function () {
    this.timeout(3_600_000);
    let env: LocalStack;
    const buildsOf = () => path.join(TEST_WORK_DIR, "builds", IMAGE);
    /** Mounts under the build directories (a chroot's proc, sys, dev): none may outlive a build. */
    const mountsUnderBuilds = () => fs.readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" ")[1] ?? "").filter((m) => m.startsWith(buildsOf()));

    before(async () => {
        // No kept image roots (lib/stages/treeCache.ts): mmdebstrap itself must be what is interrupted.
        env = await localStack({ env: { IMAGE_FACTORY_TREES: "off" } });
        // Builds of these versions kept from an earlier run (IMAGE_FACTORY_TEST_KEEP_BUILDS) would leave nothing to interrupt.
        for (const k of fs.existsSync(buildsOf()) ? fs.readdirSync(buildsOf()) : []) {
            const log = path.join(buildsOf(), k, "build.log");
            if (fs.existsSync(log) && / of debian-12-minimal v2032\.02\.0\d\n/.test(fs.readFileSync(log, "utf8").split("\n")[0] + "\n")) fs.rmSync(path.join(buildsOf(), k), { recursive: true, force: true });
        }
    });
    after(async () => env?.close());

    for (const [how, version] of [["ctrl-c", "v2032.02.01"], ["power-loss", "v2032.02.02"]] as const) {
        it(`${how} during mmdebstrap: no mount, process or .partial outlives it; recovery builds again and converges`, async () => {
            // A pinned version is part of the build key: a build that is not in the cache.
            await env.project.setConfig("local", "factory:version", version);
            const started = Date.now();
            const run = execa(PULUMI, ["up", "--stack", "local", "--yes", "--skip-preview", "--non-interactive"],
                { cwd: env.project.dir, env: env.project.env, detached: true, reject: false, all: true });
            const pgid = run.pid as number;
            const bootstrapping = () => fs.existsSync(buildsOf()) && fs.readdirSync(buildsOf()).some((k) => {
                const log = path.join(buildsOf(), k, "build.log");
                return fs.existsSync(log) && fs.statSync(log).mtimeMs > started && / of debian-12-minimal v2032\.02\.0\d\n[^\n]*\[1\/\d+\] mmdebstrap/.test(fs.readFileSync(log, "utf8")) &&
                    fs.readFileSync(log, "utf8").includes(version);
            });
            try {
                await waitFor("mmdebstrap to start", bootstrapping, 600_000, untilRunEnds(run)).catch(async (e: Error) => {
                    const all = (await run).all ?? "";
                    throw new Error(`${e.message}; its errors:\n${all.split("\n").filter((l) => /error|failed/i.test(l)).slice(0, 20).join("\n")}`);
                });
                await sleep(5000); // well inside mmdebstrap (15 to 25 s with its package files cached)
                const tree = treePids(pgid);
                if (how === "power-loss") powerLoss(pgid);
                else process.kill(-pgid, "SIGINT");
                const r = await run;
                if (process.env.IF_DEBUG_INTERRUPT) fs.writeFileSync(path.join(process.env.IF_DEBUG_INTERRUPT, `${how}-build.log`), r.all ?? "");
                // Ctrl-C lets the build in flight finish; either way, no process of the run may be left.
                // (The tree as it was when interrupted: orphans are re-parented, so it cannot be walked again.)
                const alive = () => tree.filter((p) => {
                    try {
                        return !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${p}/stat`, "utf8"));
                    } catch {
                        return false;
                    }
                });
                const deadline = Date.now() + 30_000;
                while (alive().length > 0 && Date.now() < deadline) await sleep(200);
                assert.deepEqual(alive().map((p) => fs.readFileSync(`/proc/${p}/cmdline`, "utf8").replace(/\0/g, " ")), [], "processes of the interrupted run left");
            } finally {
                powerLoss(pgid);
            }
            assert.notEqual(run.exitCode, 0, "the run finished before it was interrupted");
            if (how === "ctrl-c") {
                // Ctrl-C: the build stops and cleans up itself (its mounts undone) before the run ends.
                assert.deepEqual(mountsUnderBuilds(), [], "Ctrl-C left mounts behind");
            }
            assert.equal(fs.existsSync(path.join(env.storeRoot, "images", IMAGE, version)), false, "nothing of the broken build reached the store");

            if (how === "power-loss") await env.project.pulumi(["cancel", "--stack", "local", "--yes"]);
            const up = await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"], { reject: false });
            assert.equal(up.exitCode, 0, `recovery after ${how} during the build:\n${up.all.slice(-5000)}`);
            const img = ((await env.project.outputs("local")).images as Record<string, ImageOut>)[IMAGE];
            assert.equal(img.version, version);
            assert.equal(sha256(fs.readFileSync(img.storePath)), img.sha256);
            assert.deepEqual(mountsUnderBuilds(), [], "mounts left after the recovery");
            assert.deepEqual(partials([buildsOf(), env.storeRoot]), [], "no .partial left behind");
            await env.project.pulumi(["preview", "--stack", "local", "--expect-no-changes"]);
        });
    }
});
