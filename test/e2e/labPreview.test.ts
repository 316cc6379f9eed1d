// @slow: `pulumi preview --stack dvnt` and `--stack dvntm` as the PR checks run them (with the policy pack), through
// the real engine and the real proxmoxve plugin, no mocks: the lab configs as committed, with only the endpoints,
// paths and secrets pointed at loopback (test/helpers/labStack.ts).
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";
import { startFakePve, type FakePve } from "../helpers/fakePve";
import { configDifferences, initLabStack, labConfig, rehearsalConfig, SUBSTITUTED, type LabEndpoints } from "../helpers/labStack";
import { TestProject } from "../helpers/project";

describe("lab stacks preview with the real proxmoxve plugin @slow", function () {
    this.timeout(900_000);
    let pve: FakePve;
    let gh: FakeGithub;
    let project: TestProject;
    let endpoints: LabEndpoints;
    const githubToken = "ghp_" + "PreviewFakeToken0123456789abcdefABCDEF";

    before(async () => {
        pve = await startFakePve();
        gh = await startFakeGithub({ token: githubToken, repos: [["deevnet", "images"]] });
        project = TestProject.create();
        const key = path.join(project.dir, "packer_ed25519");
        fs.writeFileSync(key, "not used by a preview\n", { mode: 0o600 });
        endpoints = {
            storeRoot: path.join(project.dir, "artifacts"), storeUrl: "http://127.0.0.1:18089", registry: "127.0.0.1:15000",
            githubApi: gh.url, proxmoxUrl: pve.url, workDir: path.join(project.dir, "work"), evidenceDir: path.join(project.dir, "evidence"),
            packerSshKeyFile: key,
        };
    });
    after(async () => {
        project?.remove();
        await gh?.close();
        await pve?.close();
    });

    it("the rehearsal configs differ from the lab files only in endpoints and paths", () => {
        for (const stack of ["dvnt", "dvntm"] as const) {
            const diff = configDifferences(labConfig(stack), rehearsalConfig(stack, endpoints));
            assert.ok(diff.length > 0);
            for (const d of diff) assert.ok(SUBSTITUTED.some((k) => d === k || d.startsWith(`${k}.`)), `${stack}: ${d} is not an endpoint, path or secret`);
        }
    });

    /** dvnt as the lab has it when dvntm's PR check runs: published, with the images dvntm reuses in its outputs. */
    const made = new Set<string>();
    async function labStack(stack: "dvnt" | "dvntm"): Promise<void> {
        if (made.has(stack)) return;
        await initLabStack(project, stack, endpoints, { githubToken, ghcrToken: "ghcr-preview-token", proxmoxApiToken: pve.token });
        made.add(stack);
    }
    async function publishedDvnt(): Promise<void> {
        await labStack("dvnt");
        const image = (name: string) => ({
            version: "v2026.11.25", sha256: "ab".repeat(32), size: 150_000_000, format: "qcow2",
            qcow2Url: `${endpoints.storeUrl}/images/${name}/v2026.11.25/${name}-v2026.11.25.qcow2`,
            releaseAssetUrl: `${gh.url}/deevnet/images/releases/download/v2026.11.25/${name}-v2026.11.25.qcow2`,
            buildInfo: { image: name, version: "v2026.11.25", buildKey: "k", buildTime: "2026-11-25T12:00:00.000Z", git: { commit: "c0ffee" }, base: { id: "debian:bookworm", sha256: "cd".repeat(32) } },
        });
        const state = {
            version: 3,
            deployment: {
                // magic: the sha256 of the version, as the engine writes it
                manifest: { time: "2026-11-25T12:00:00Z", magic: crypto.createHash("sha256").update("v3.259.0").digest("hex"), version: "v3.259.0" },
                resources: [{
                    urn: "urn:pulumi:dvnt::image-factory::pulumi:pulumi:Stack::image-factory-dvnt", custom: false, type: "pulumi:pulumi:Stack",
                    outputs: { schemaVersion: 2, images: { "debian-12-minimal": image("debian-12-minimal"), "debian-12-platform": image("debian-12-platform") } },
                }],
            },
        };
        const file = path.join(project.dir, "dvnt-state.json");
        fs.writeFileSync(file, JSON.stringify(state));
        await project.pulumi(["stack", "import", "--stack", "dvnt", "--file", file]);
    }

    for (const stack of ["dvnt", "dvntm"] as const) {
        it(`pulumi preview --stack ${stack} --policy-pack policy plans every image with the plugin`, async () => {
            if (stack === "dvntm") await publishedDvnt();
            await labStack(stack);
            const r = await project.pulumi(["preview", "--stack", stack, "--policy-pack", "policy", "--diff"], { reject: false });
            assert.equal(r.exitCode, 0, r.all);
            assert.doesNotMatch(r.all, /using pulumi-resource-proxmoxve from \$PATH/);
            const images = (labConfig(stack)["factory:images"] as string[]);
            const proxmoxImages = stack === "dvnt" ? ["debian-12-minimal", "debian-12-platform", "debian-12-services"] : images;
            for (const image of proxmoxImages) {
                assert.match(r.stdout, new RegExp(`\\+ proxmoxve:download/file:File: \\(create\\)[\\s\\S]*?${image}-proxmox-image`), `${stack}: no download planned for ${image}`);
            }
            assert.match(r.stdout, /\+ proxmoxve:index\/vmLegacy:VmLegacy: \(create\)/);
            if (stack === "dvntm") {
                // The mobile lab downloads from the release asset, not from dvnt's builder.
                assert.match(r.stdout, new RegExp(`url\\s+: "${gh.url}/deevnet/images/releases/download/v2026\\.11\\.25/debian-12-minimal-v2026\\.11\\.25\\.qcow2"`));
            }
            assert.match(r.stdout, /Policy Packs run:\s+Name\s+Version\s+image-factory\|/, "the policy pack must have run");
            assert.doesNotMatch(r.all, /\[mandatory\]/, "no mandatory policy may be violated");
            assert.equal(r.all.includes(pve.token.split("=")[1]), false, "the Proxmox token must not be printed");
            assert.equal(r.all.includes(githubToken), false, "the GitHub token must not be printed");
            assert.deepEqual(await pve.downloads(), [], "a preview downloads nothing");
        });
    }

    it("the policy pack still refuses a reused image's digest that does not come from the reused stack (a literal)", async () => {
        const index = path.join(project.dir, "components", "Image.ts"); // where reusedImage wires the digest
        const original = fs.readFileSync(index, "utf8");
        assert.match(original, /sha256: record\.sha256/);
        fs.writeFileSync(index, original.replace("sha256: record.sha256", `sha256: "${"ab".repeat(32)}"`));
        try {
            await publishedDvnt().catch(() => undefined);
            await labStack("dvntm");
            const r = await project.pulumi(["preview", "--stack", "dvntm", "--policy-pack", "policy"], { reject: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.all, /\[mandatory\]\s+published-sha256-from-build[\s\S]*debian-12-minimal-proxmox-image \(proxmoxve:download\/file:File\) publishes a checksum that does not come from a build/);
        } finally {
            fs.writeFileSync(index, original);
        }
    });
});
