// @slow: an existing stack survives an upgrade of the program. A stack made by the program of an earlier commit
// (UPGRADE_FROM: the last one before the architecture step of issue 21) — one image built, validated, stored, pushed
// to a registry, uploaded to a GitHub release and made a Proxmox template — then previewed by this checkout's
// program, in the same directory and state, as `git pull && pulumi preview` would: no resource is created,
// replaced, updated or deleted, and after an `up` every resource is the one the earlier program made (same type,
// name and id; a renamed component's children move to their new URNs through its alias). A refactor that moves a
// resource (a new parent component, a renamed type) without `aliases` fails this.
// IMAGE_FACTORY_UPGRADE_FROM=<commit> upgrades from another commit (one whose program runs on this node_modules).
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FORMER_TYPES } from "../../providers/dynamic";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";
import { startFakePve, type FakePve } from "../helpers/fakePve";
import { localStack, type LocalStack } from "../helpers/localStack";
import { startRegistry, type TestRegistry } from "../helpers/registry";
import { REPO_ROOT } from "../helpers/setup";

const UPGRADE_FROM = process.env.IMAGE_FACTORY_UPGRADE_FROM ?? "4ae5082206f22c37139ca250ea27569b3fee12cb";

describe("upgrade: a stack made by an earlier commit previews with no changes under this one @slow", function () {
    this.timeout(1_800_000);
    const token = "ghp_upgrade_test_token";
    let oldTree: string;
    let env: LocalStack;
    let registry: TestRegistry;
    let gh: FakeGithub;
    let pve: FakePve;

    before(async () => {
        const has = await execa("git", ["-C", REPO_ROOT, "cat-file", "-e", `${UPGRADE_FROM}^{commit}`], { reject: false });
        if (has.exitCode !== 0) {
            throw new Error(`commit ${UPGRADE_FROM} (the program to upgrade from) is not in this clone: fetch the full history (git fetch --unshallow) or set IMAGE_FACTORY_UPGRADE_FROM`);
        }
        oldTree = fs.mkdtempSync(path.join(os.tmpdir(), "if-upgrade-from-"));
        await execa("bash", ["-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "_", REPO_ROOT, UPGRADE_FROM, oldTree]);
        registry = await startRegistry();
        gh = await startFakeGithub({ token, repos: [["deevnet", "images"]] });
        pve = await startFakePve();
        env = await localStack({ from: oldTree, env: { GITHUB_TOKEN: token, IMAGE_FACTORY_GITHUB_RETRY_MS: "20" } });
        await env.project.setConfig("local", "factory:oci", JSON.stringify({ registry: registry.host, repository: "upgrade/images", plainHttp: true }));
        await env.project.setConfig("local", "factory:release", JSON.stringify({ owner: "deevnet", repo: "images", apiUrl: gh.url }));
        await env.project.setConfig("local", "factory:proxmox", JSON.stringify({ endpoint: `${pve.url}/`, insecure: true, node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0", vmidRange: [9000, 9099] }));
        await env.project.setConfig("local", "factory:proxmoxApiToken", pve.token, { secret: true });
    });
    after(async () => {
        await env?.close();
        await Promise.all([gh?.close(), pve?.close(), registry?.stop()]);
        if (oldTree) fs.rmSync(oldTree, { recursive: true, force: true });
    });

    it("the earlier program makes the stack; this one previews it with every resource the same", async () => {
        const t0 = Date.now();
        await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"]);
        const before = await env.project.exportState("local");
        const urns = (before.deployment.resources ?? []).map((r) => String(r.urn)).sort();
        assert.ok(urns.some((u) => u.includes("OciPush")) && urns.some((u) => u.includes("GithubReleaseUpload")) && urns.some((u) => /proxmoxve:download/.test(u)),
            `the earlier program did not publish everywhere:\n${urns.join("\n")}`);
        const outputsBefore = await env.project.outputs("local");
        console.log(`      up with ${UPGRADE_FROM.slice(0, 7)}: ${((Date.now() - t0) / 1000).toFixed(1)}s, ${urns.length} resources`);

        env.project.replaceProgram(REPO_ROOT);
        const preview = await env.project.pulumi(["preview", "--stack", "local", "--expect-no-changes", "--diff"], { reject: false });
        assert.equal(preview.exitCode, 0, `this program changes the stack made by ${UPGRADE_FROM.slice(0, 7)}:\n${preview.all.slice(-6000)}`);
        // "read" is the stack's reference to its own last outputs (the kept Proxmox templates): a read, not a change.
        const summary = await env.project.previewSummary("local");
        assert.deepEqual(Object.keys(summary).filter((k) => k !== "same" && k !== "read"), [], JSON.stringify(summary));
        assert.ok(summary.same >= 20, JSON.stringify(summary));

        // An up is a no-op too, and the outputs (the contract consumers read) are unchanged.
        const up = await env.project.upEvents("local");
        assert.deepEqual(Object.keys(up.changes).filter((k) => k !== "same" && k !== "read"), [], JSON.stringify(up.changes));
        assert.deepEqual(await env.project.outputs("local"), outputsBefore);
        // Aliases move a renamed component's resources to their new URNs in the state; what they are does not
        // change: every custom resource keeps its type, name and id (the engine neither re-created nor dropped one).
        // A type renamed since (FORMER_TYPES, each with an alias) is the same resource under its new token.
        const renamed = (type: string) => {
            const m = /^(pulumi-nodejs:dynamic\/image-factory:)(.+)$/.exec(type);
            return m && FORMER_TYPES[m[2]] ? `${m[1]}${FORMER_TYPES[m[2]]}` : type;
        };
        const identities = (state: Awaited<ReturnType<typeof env.project.exportState>>) => (state.deployment.resources ?? [])
            .filter((r) => r.custom === true).map((r) => `${renamed(String(r.type))}::${String(r.urn).split("::").pop()}::${String(r.id)}`).sort();
        const afterState = await env.project.exportState("local");
        assert.deepEqual(identities(afterState), identities(before));
        assert.equal((afterState.deployment.resources ?? []).length, urns.length);
    });
});
