// @slow: a real Packer build (qemu builder, TCG here) of the builder-node image from the factory's own
// debian-12-minimal qcow2, provisioned by Packer's Ansible provisioner twice (the second run must change nothing),
// then checksummed, validated and read offline. CI builds the small variant (no extra packages, no tool copies:
// ~4 min under TCG); IMAGE_FACTORY_FULL_BUILDS=1 builds the full node (measured: ~12 min under TCG, 667 MB).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildImage, type BuildResult } from "../../lib/stages/pipeline";
import { planBuild, withBase } from "../../lib/stages/plan";
import { OfflineImage } from "../../lib/validation/inspect";
import { loadRecipe, type ImageRecipe } from "../../lib/recipe";
import { validateArtifact } from "../../lib/validation/validateArtifact";
import { LOCAL_KEY, TEST_WORK_DIR } from "../helpers/localStack";
import { REPO_ROOT } from "../helpers/setup";
import { machineDebian } from "../helpers/debian";
import { smallBuilderNode } from "../helpers/builderNode";

const FULL = process.env.IMAGE_FACTORY_FULL_BUILDS === "1";

describe(`builder-node by Packer (FR-1, FR-5)${FULL ? " — full" : ""} @slow`, function () {
    this.timeout(60 * 60_000);
    const key = fs.readFileSync(`${LOCAL_KEY}.pub`, "utf8").trim();
    const debian = machineDebian();
    // Its own work dir, not wiped per test run: an unchanged build key is reused (warm CI), as content addressing promises.
    const common = { projectDir: REPO_ROOT, workDir: path.join(TEST_WORK_DIR, "packer"), bootstrapUser: { name: "ansible", authorizedKeys: [key] }, domain: "lab.example", debian };
    const lines: string[] = [];
    let base: BuildResult;
    let node: BuildResult;
    let img: OfflineImage;
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "if-bn-"));

    before(async () => {
        const minimal = planBuild({ ...common, recipe: loadRecipe("debian-12-minimal") });
        base = await buildImage({ ...minimal.request, version: "v2026.01.01", buildInfo: { ...minimal.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } });
        const recipe = loadRecipe("builder-node");
        const small: ImageRecipe = FULL ? recipe : smallBuilderNode(recipe);
        const plan = planBuild({ ...common, recipe: small, base: { id: "image:debian-12-minimal", version: "this-stack", identity: base.buildKey } });
        const t0 = Date.now();
        node = await buildImage({ ...withBase(plan.request, { path: base.path, sha256: base.sha256 }), version: "v2026.01.01",
            buildInfo: { ...plan.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } }, (m) => lines.push(m));
        lines.push(`(test: builder-node ${node.reused ? "reused" : `built in ${Math.round((Date.now() - t0) / 1000)}s`})`);
        img = await OfflineImage.open(node.path, { tmpDir: scratch });
    });
    after(() => {
        img?.close();
        fs.rmSync(scratch, { recursive: true, force: true });
    });

    it("Packer's qemu builder ran from the base qcow2 with progress, and Ansible converged (second run changed 0)", () => {
        // The build log is kept next to the artifact, so this holds also when an earlier run's build was reused.
        const log = fs.readFileSync(node.logPath, "utf8");
        assert.match(log, /packer: Connected to SSH!/);
        assert.match(log, /packer: TASK \[builder_node : Lay out the store/);
        assert.match(log, /builder-node: playbook converged: first run changed [1-9]\d*, second run changed 0/);
        assert.match(log, /\[4\/4\] recompress the qcow2, check, sha256 done in/);
        if (!node.reused) assert.ok(lines.some((l) => /packer: Connected to SSH!/.test(l)), "progress reaches the caller");
    });

    it("passes the validation gate and records its base image", async () => {
        const r = await validateArtifact(node.path, { image: "builder-node", version: node.version, bootstrapUser: "ansible", buildInfo: { buildKey: node.buildKey } });
        assert.ok(r.passed, JSON.stringify(r.checks, null, 1));
        const info = JSON.parse(await img.readFile("/etc/image-factory/build.json") ?? "{}") as { base: { id: string; sha256: string }; builder: string; kind: string };
        assert.deepEqual(info.base, { id: "image:debian-12-minimal", version: "this-stack", sha256: base.sha256 });
        assert.equal(info.builder, "packer");
        assert.equal(info.kind, "builder-node");
    });

    it("carries the artifact service, the ~1 TB storage layout and the tools' PATH; no trace of the build", async () => {
        assert.match(await img.readFile("/etc/nginx/sites-enabled/image-factory-artifacts") ?? "", /listen 8089;[\s\S]*root \/srv\/artifacts;/);
        assert.match(await img.readFile("/etc/fstab") ?? "", /^LABEL=factory-data \/srv ext4 defaults,nofail,x-systemd\.device-timeout=10s 0 0$/m);
        assert.match(await img.readFile("/srv/image-factory/LAYOUT.txt") ?? "", /\/srv\/artifacts\s+500G/);
        for (const d of ["/srv/artifacts/images", "/srv/image-factory/work", "/srv/image-factory/cache/base-images", "/srv/image-factory/evidence"]) {
            assert.ok(await img.exists(d), d);
        }
        assert.match(await img.readFile("/etc/profile.d/image-factory.sh") ?? "", /\/opt\/image-factory\/bin/);
        const keys = await img.readFile("/home/ansible/.ssh/authorized_keys") ?? "";
        assert.ok(keys.includes(key.split(" ")[1]));
        assert.doesNotMatch(keys, /image-factory-packer-build/, "the build's throw-away key was removed");
        assert.equal(await img.readFile("/etc/machine-id"), "");
        assert.equal(await img.exists("/var/lib/cloud/instance"), false, "cloud-init will run again on first boot");
        assert.equal(await img.exists("/tmp/build.json"), false);
    });

    it("carries forge-install, the one command that puts this factory on the node (NFR-6), in every variant", async () => {
        const script = await img.readFile("/opt/image-factory/bin/forge-install") ?? "";
        assert.equal(script, fs.readFileSync(path.join(REPO_ROOT, "ansible", "roles", "builder_node", "files", "forge-install.sh"), "utf8"));
        assert.match(await img.readFile("/etc/profile.d/image-factory.sh") ?? "", /^export IMAGE_FACTORY_CACHE=\/srv\/image-factory\/cache$/m);
        assert.equal(await img.readFile("/etc/modules-load.d/image-factory.conf"), "fuse\n");
    });

    it(FULL ? "the full node has qemu, packer, ansible and the pinned engine" : "the full node's packages and tools are opt-in (IMAGE_FACTORY_FULL_BUILDS=1)", async function () {
        if (!FULL) this.skip();
        const manifest = await img.readFile("/etc/image-factory/pkg-manifest.txt") ?? "";
        for (const p of ["qemu-system-x86", "qemu-utils", "ansible", "nginx-light", "xorriso", "qemu-user-static", "fuse2fs", "debian-installer-12-netboot-amd64", "uidmap"]) assert.match(manifest, new RegExp(`^${p}\\t`, "m"), p);
        for (const t of ["pulumi", "packer", "oras", "node", "actionlint"]) assert.ok(await img.exists(`/opt/image-factory/bin/${t}`), t);
        // the forge kit: npm run by the node above, the Packer plugins as `packer init` lays them out, the Proxmox VE plugin
        assert.equal((await img.stat("/opt/image-factory/bin/npm"))?.linkTarget, "../npm/bin/npm-cli.js");
        assert.ok(await img.exists("/opt/image-factory/npm/package.json"));
        assert.ok(await img.exists("/opt/image-factory/packer-plugins/github.com/hashicorp/qemu"));
        assert.ok(await img.exists("/opt/image-factory/plugins/pulumi-resource-proxmoxve"));
    });
});
