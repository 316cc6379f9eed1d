// The real engine, offline: our pinned CLI, our Node.js language host and dynamic-provider shim, the file
// backend, and the project's own program.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";
import { TestProject } from "../helpers/project";
import { REPO_ROOT } from "../helpers/setup";
import { waitFor } from "../helpers/waitFor";

/** The file backend's lock files (one per run holding the stack). */
function lockFiles(project: TestProject): string[] {
    const dir = path.join(project.backend, ".pulumi", "locks");
    if (!fs.existsSync(dir)) return [];
    return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
}

describe("engine: pinned Pulumi CLI and language host", function () {
    this.timeout(300_000);

    it("pulumi version prints the pin from tools/build.sh", async () => {
        const { stdout } = await execa("pulumi", ["version"]);
        const pin = /PULUMI_VERSION=(v[\d.]+)/.exec(fs.readFileSync(path.join(REPO_ROOT, "tools", "build.sh"), "utf8"))?.[1];
        assert.equal(stdout.trim(), pin);
        assert.equal(stdout.trim(), "v3.259.0");
    });

    it("the language host reports the same engine version, marked as ours", async () => {
        const { stdout } = await execa("pulumi-language-nodejs", ["-version"]);
        assert.equal(stdout.trim(), "v3.259.0+image-factory");
    });

    describe("the local stack through the real engine", () => {
        let project: TestProject;
        before(async () => {
            project = TestProject.create();
            await project.initStack("local");
            // The engine itself is under test here, not image builds (test/e2e/qcow2Image.test.ts has those).
            await project.setConfig("local", "factory:images", "[]");
        });
        after(() => project.remove());

        it("preview plans the artifact store without touching the disk", async () => {
            const summary = await project.previewSummary("local");
            assert.ok((summary.create ?? 0) >= 3, `expected creates, got ${JSON.stringify(summary)}`);
            assert.equal(fs.existsSync(path.join(project.dir, ".artifacts", "store.json")), false);
        });

        it("up creates the store root, a second up reports no changes, destroy cleans up", async () => {
            await project.pulumi(["up", "--stack", "local", "--yes"]);
            const marker = JSON.parse(fs.readFileSync(path.join(project.dir, ".artifacts", "store.json"), "utf8"));
            assert.deepEqual(marker, { schemaVersion: 1, layout: "images/<name>/<version>/<name>-<version>.qcow2" });
            const outputs = await project.outputs("local");
            assert.equal((outputs.artifactStore as { root: string }).root, path.join(project.dir, ".artifacts"));
            assert.equal(outputs.schemaVersion, 2);

            const state = await project.exportState("local");
            const types = (state.deployment.resources ?? []).map((r) => r.type);
            assert.ok(types.includes("pulumi-nodejs:dynamic/image-factory:StoreRoot"), types.join(","));
            assert.ok(types.includes("image-factory:store:ArtifactStore"));

            const second = await project.upEvents("local");
            assert.deepEqual(Object.keys(second.changes), ["same"], `second up changed something: ${JSON.stringify(second.changes)}`);
            await project.pulumi(["preview", "--stack", "local", "--expect-no-changes"]);

            await project.pulumi(["destroy", "--stack", "local", "--yes"]);
            assert.equal(fs.existsSync(path.join(project.dir, ".artifacts")), false, "destroy left the store behind");
            const after = await project.exportState("local");
            assert.equal((after.deployment.resources ?? []).length, 0);
        });

        it("bad config fails the preview naming the key, the value and what is allowed", async () => {
            await project.setConfig("local", "factory:maxPass", "7");
            await project.setConfig("local", "factory:oci.registry", "not a url!", { path: true });
            await project.setConfig("local", "factory:oci.repository", "lab/images", { path: true });
            const r = await project.pulumi(["preview", "--stack", "local"], { reject: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.all, /factory:maxPass = 7: must be 1, 2 or 3/);
            assert.match(r.all, /factory:oci\.registry = "not a url!": must be a registry host with optional port/);
            assert.doesNotMatch(r.all, /at Object\.|\.ts:\d+:\d+/, "a config error must not print a stack trace");
            await project.pulumi(["config", "rm", "factory:maxPass", "--stack", "local"]);
            await project.pulumi(["config", "rm", "factory:oci", "--stack", "local"]);
        });

        it("a missing publishing tool (oras, gpg) fails up before any build, naming it and the fix", async () => {
            await project.setConfig("local", "factory:images", '["debian-12-minimal"]');
            await project.setConfig("local", "factory:oci", JSON.stringify({ registry: "127.0.0.1:5999", repository: "lab/images", plainHttp: true }));
            await project.setConfig("local", "factory:bootstrapUser", JSON.stringify({ name: "ansible", sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t"] }));
            try {
                const r = await project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"], { reject: false, env: { ORAS: "/nonexistent/oras" } });
                assert.notEqual(r.exitCode, 0);
                assert.match(r.all, /ORAS=\/nonexistent\/oras does not exist: point ORAS at an oras binary or unset it/);
                // A PATH with node and our tools only: gpg (in /usr/bin) is not on it.
                const nodeOnly = path.join(project.dir, "node-only-bin");
                fs.mkdirSync(nodeOnly, { recursive: true });
                fs.symlinkSync(process.execPath, path.join(nodeOnly, "node"));
                const g = await project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"],
                    { reject: false, env: { EVIDENCE_SIGN: "1", EVIDENCE_GPG_KEY: "ABCDEF", PATH: `${nodeOnly}:${path.join(REPO_ROOT, ".tools", "bin")}` } });
                assert.notEqual(g.exitCode, 0);
                assert.match(g.all, /evidence signing \(EVIDENCE_SIGN=1\): a command is missing from PATH: gpg \(Debian package gnupg\); nothing was built/);
                const state = await project.exportState("local");
                assert.ok(!(state.deployment.resources ?? []).some((x) => String(x.type).endsWith(":ImageBuild")), "no build may start");
            } finally {
                await project.setConfig("local", "factory:images", "[]");
                await project.pulumi(["config", "rm", "factory:oci", "--stack", "local"]);
            }
        });
    });

    describe("a dynamic provider under the real engine", () => {
        let project: TestProject;
        let target: string;
        before(async () => {
            project = TestProject.create({ from: path.join(REPO_ROOT, "test", "fixtures", "dynamic-provider"), entries: ["Pulumi.yaml", "index.ts", "tsconfig.json", "package.json"] });
            await project.initStack("dev");
            target = path.join(project.dir, "owned.txt");
            await project.setConfig("dev", "fixture:path", target);
        });
        after(() => project.remove());

        it("creates, updates on an input change, then deletes", async () => {
            await project.setConfig("dev", "fixture:content", "one");
            await project.pulumi(["up", "--stack", "dev", "--yes"]);
            assert.equal(fs.readFileSync(target, "utf8"), "one");
            assert.equal((await project.outputs("dev")).writes, 1);

            await project.setConfig("dev", "fixture:content", "two");
            const up = await project.upEvents("dev");
            assert.deepEqual(up.changes, { same: 1, update: 1 });
            assert.equal(fs.readFileSync(target, "utf8"), "two");
            assert.equal((await project.outputs("dev")).writes, 2);

            const state = await project.exportState("dev");
            assert.ok((state.deployment.resources ?? []).some((r) => r.type === "pulumi-nodejs:dynamic/fixture:OwnedFile"));

            await project.pulumi(["destroy", "--stack", "dev", "--yes"]);
            assert.equal(fs.existsSync(target), false);
        });

        it("a damaged state file: the engine's error shows, and the README's recovery (restore the newest backup, refresh) converges", async () => {
            await project.setConfig("dev", "fixture:content", "before-damage");
            await project.pulumi(["up", "--stack", "dev", "--yes", "--skip-preview"]);
            const stackFile = path.join(project.backend, ".pulumi", "stacks", "dynamic-provider-fixture", "dev.json");
            const good = fs.readFileSync(stackFile, "utf8");
            fs.writeFileSync(stackFile, good.slice(0, Math.floor(good.length / 2))); // cut in half, as a full disk or a crash might
            const r = await project.pulumi(["preview", "--stack", "dev"], { reject: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.all, /failed to load checkpoint|unexpected end of JSON input|could not deserialize/i);
            // README Troubleshooting: put the newest backup (a checkpoint, like the stack file) back in its place.
            const backups = path.join(project.backend, ".pulumi", "backups", "dynamic-provider-fixture", "dev");
            const newest = fs.readdirSync(backups).sort().at(-1) as string;
            fs.copyFileSync(path.join(backups, newest), stackFile);
            await project.pulumi(["refresh", "--stack", "dev", "--yes"]);
            const again = await project.pulumi(["up", "--stack", "dev", "--yes", "--skip-preview"], { reject: false });
            assert.equal(again.exitCode, 0, again.all);
            assert.equal(fs.readFileSync(target, "utf8"), "before-damage");
        });

        it("a second up of a stack that is being updated is refused with the backend's lock message", async () => {
            await project.setConfig("dev", "fixture:delayMs", "8000");
            await project.setConfig("dev", "fixture:content", "slow");
            const first = project.pulumi(["up", "--stack", "dev", "--yes", "--skip-preview"], { reject: false });
            await waitFor("the run's lock file", () => fs.existsSync(path.join(project.backend, ".pulumi", "locks")) && lockFiles(project).length > 0, 20_000);
            const second = await project.pulumi(["up", "--stack", "dev", "--yes", "--skip-preview"], { reject: false });
            assert.notEqual(second.exitCode, 0);
            assert.match(second.all, /the stack is currently locked by 1 lock\(s\)/);
            assert.match(second.all, /pulumi cancel/, "the engine's message names the way out");
            assert.equal((await first).exitCode, 0, "the first run is not disturbed");
            assert.equal(fs.readFileSync(target, "utf8"), "slow");
        });

        it("a run killed with SIGKILL leaves the lock; the README's recovery (pulumi cancel, then up) converges", async () => {
            await project.setConfig("dev", "fixture:content", "after-kill");
            const run = execa(path.join(REPO_ROOT, ".tools", "bin", "pulumi"), ["up", "--stack", "dev", "--yes", "--skip-preview"],
                { cwd: project.dir, env: project.env, reject: false });
            await waitFor("the run's lock file", () => lockFiles(project).length > 0, 20_000);
            await new Promise((r) => setTimeout(r, 3000)); // inside the provider's update
            run.kill("SIGKILL");
            await run;
            const refused = await project.pulumi(["up", "--stack", "dev", "--yes", "--skip-preview"], { reject: false });
            assert.match(refused.all, /the stack is currently locked/);
            await project.pulumi(["cancel", "--stack", "dev", "--yes"]);
            await new Promise((r) => setTimeout(r, 6000)); // let the orphaned provider's update finish, as an operator would wait
            const again = await project.pulumi(["up", "--stack", "dev", "--yes", "--skip-preview"], { reject: false });
            assert.equal(again.exitCode, 0, again.all);
            assert.equal(fs.readFileSync(target, "utf8"), "after-kill");
            assert.equal(lockFiles(project).length, 0);
            // The fixture's provider is not ours (no engine watch): its orphan from the killed run idles on; end it.
            for (const pid of fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
                try {
                    if (fs.readlinkSync(`/proc/${pid}/cwd`) === project.dir && Number(pid) !== process.pid) process.kill(Number(pid));
                } catch {
                    /* gone or not ours */
                }
            }
            await project.setConfig("dev", "fixture:delayMs", "0");
            await project.pulumi(["destroy", "--stack", "dev", "--yes"]);
        });
    });
});
