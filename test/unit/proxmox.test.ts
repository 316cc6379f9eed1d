// ProxmoxTemplate and the lab stacks under pulumi.runtime.setMocks (the Proxmox provider plugin cannot be built
// here): the exact inputs handed to download.File and VmLegacy, the checksum plumbing from the build, VM id
// allocation across runs, dvntm reusing dvnt's artifacts, and no plugin-needing resource in the local stack.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { requiredAcl } from "../../lib/publish/proxmoxApi";
import { REPO_ROOT } from "../helpers/setup";
import { allocateVmid, rotate, templateName } from "../../lib/publish/vmids";
import { fakeSha, runProgram, stackConfig, type MockRun } from "../helpers/mockProgram";

const FILE = "proxmoxve:download/file:File";
const VM = "proxmoxve:index/vmLegacy:VmLegacy";
const DYN = "pulumi-nodejs:dynamic/image-factory:";

describe("ProxmoxTemplate and the lab stacks (mocks)", function () {
    this.timeout(180_000);
    let dvnt: MockRun;

    before(async () => {
        dvnt = await runProgram("dvnt", stackConfig("dvnt"));
    });

    it("downloads each published qcow2 onto the node with its sha256 checked, as an importable disk", () => {
        const files = dvnt.ofType(FILE);
        assert.deepEqual(files.map((f) => f.name).sort(), ["debian-12-minimal-proxmox-image", "debian-12-platform-proxmox-image", "debian-12-services-proxmox-image"]);
        const f = files.find((x) => x.name === "debian-12-minimal-proxmox-image")!;
        const build = dvnt.ofType(`${DYN}ImageBuild`).find((b) => b.name === "debian-12-minimal-build")!;
        assert.deepEqual(f.inputs, {
            nodeName: "pve1",
            datastoreId: "local",
            contentType: "import",
            url: "http://builder.dvnt.internal:8089/images/debian-12-minimal/v2026.11.25/debian-12-minimal-v2026.11.25.qcow2",
            fileName: "debian-12-minimal-v2026.11.25.qcow2",
            checksum: fakeSha("debian-12-minimal@v2026.11.25"),
            checksumAlgorithm: "sha256",
            overwrite: false,
            overwriteUnmanaged: true,
            uploadTimeout: 1800,
            verify: true,
        });
        assert.equal(build.inputs.name, "debian-12-minimal", "the checksum must be the build's sha256 output");
        assert.match(String(f.provider), /proxmoxve.*::proxmox::/);
    });

    it("creates the template VM from the imported disk: cloud-init drive, serial console, guest agent, virtio-scsi, tags, description", () => {
        const vm = dvnt.ofType(VM).find((x) => x.name === "debian-12-minimal-proxmox-template")!;
        const i = vm.inputs as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- provider input bag checked field by field
        assert.equal(i.template, true);
        assert.equal(i.started, false);
        assert.equal(i.nodeName, "pve1");
        assert.equal(i.scsiHardware, "virtio-scsi-single");
        assert.deepEqual(i.disks, [{ interface: "scsi0", datastoreId: "local-lvm", importFrom: "pve1/local:import/debian-12-minimal-v2026.11.25.qcow2", iothread: true, discard: "on", ssd: true }]);
        assert.deepEqual(i.serialDevices, [{ device: "socket" }]);
        assert.deepEqual(i.vga, { type: "serial0" });
        assert.deepEqual(i.agent, { enabled: true, trim: true });
        assert.equal(i.initialization.type, "nocloud");
        assert.equal(i.initialization.userAccount.username, "ansible");
        assert.match(i.initialization.userAccount.keys[0], /^ssh-ed25519 /);
        assert.deepEqual(i.networkDevices, [{ bridge: "vmbr0", model: "virtio" }]);
        assert.deepEqual(i.tags, ["if-debian-12-minimal", "v2026.11.25", `sha-${fakeSha("debian-12-minimal@v2026.11.25").slice(0, 12)}`]);
        assert.equal(i.name, "tpl-debian-12-minimal-v2026-11-25");
        assert.match(i.description, /\*\*debian-12-minimal v2026\.11\.25\*\*/);
        assert.match(i.description, /commit `c0ffee`/);
    });

    it("allocates VM ids inside the configured block and range, distinct per template", () => {
        const ids = Object.fromEntries(dvnt.ofType(VM).map((v) => [v.name, v.inputs.vmId as number]));
        const minimal = ids["debian-12-minimal-proxmox-template"];
        assert.ok(minimal >= 9000 && minimal < 9006, `block 9000+2*keepLast, got ${minimal}`);
        for (const id of Object.values(ids)) assert.ok(id >= 9000 && id <= 9099);
        assert.equal(new Set(Object.values(ids)).size, 3);
        const out = dvnt.outputs.images as Record<string, { proxmox: { vmid: number; node: string; name: string } }>;
        assert.deepEqual(out["debian-12-minimal"].proxmox, { node: "pve1", vmid: minimal, name: "tpl-debian-12-minimal-v2026-11-25" });
    });

    it("a new version gets a new id beside the old template; the oldest beyond keepLast is retired; a re-run keeps ids", async () => {
        const previous = (dvnt.outputs.proxmox as { templates: Record<string, unknown[]> });
        const older = [
            { image: "debian-12-minimal", version: "v2026.11.01", vmid: 9003, name: "tpl-x", sha256: fakeSha("a") },
            { image: "debian-12-minimal", version: "v2026.10.01", vmid: 9004, name: "tpl-y", sha256: fakeSha("b") },
        ];
        const history = { ...previous.templates, "debian-12-minimal": [...(previous.templates["debian-12-minimal"] as unknown[]), ...older] };
        const next = await runProgram("dvnt", stackConfig("dvnt"), { version: "v2026.12.01", stacks: { "organization/image-factory/dvnt": { proxmox: { node: "pve1", templates: history } } } });
        const vm = next.ofType(VM).find((x) => x.name === "debian-12-minimal-proxmox-template")!;
        const oldId = (dvnt.ofType(VM).find((x) => x.name === "debian-12-minimal-proxmox-template")!).inputs.vmId;
        assert.notEqual(vm.inputs.vmId, oldId, "the new version reused the old template's id");
        assert.ok(![9003, 9004].includes(vm.inputs.vmId as number));
        const retention = next.ofType(`${DYN}TemplateRetention`).find((r) => r.inputs.image === "debian-12-minimal")!;
        assert.deepEqual((retention.inputs.retired as Array<{ version: string }>).map((r) => r.version), ["v2026.10.01"], "keepLast 3: the oldest of four goes");
        const kept = (next.outputs.proxmox as { templates: Record<string, Array<{ version: string }>> }).templates["debian-12-minimal"];
        assert.deepEqual(kept.map((k) => k.version), ["v2026.12.01", "v2026.11.25", "v2026.11.01"]);

        const again = await runProgram("dvnt", stackConfig("dvnt"), { version: "v2026.12.01", stacks: { "organization/image-factory/dvnt": { proxmox: next.outputs.proxmox as Record<string, unknown> } } });
        assert.equal(again.ofType(VM).find((x) => x.name === "debian-12-minimal-proxmox-template")!.inputs.vmId, vm.inputs.vmId);
    });

    it("dvntm reuses dvnt's artifacts: no build, templates from dvnt's URLs and digests", async () => {
        const dvntOutputs = { images: dvnt.outputs.images as Record<string, unknown> };
        const m = await runProgram("dvntm", stackConfig("dvntm"), { stacks: { "organization/image-factory/dvnt": dvntOutputs } });
        assert.deepEqual(m.ofType(`${DYN}ImageBuild`), []);
        const files = m.ofType(FILE);
        assert.deepEqual(files.map((f) => f.name).sort(), ["debian-12-minimal-proxmox-image", "debian-12-platform-proxmox-image"]);
        const f = files.find((x) => x.name === "debian-12-minimal-proxmox-image")!;
        // Away from home: the release asset, not dvnt's builder (before: http://builder.dvnt.internal:8089/…).
        assert.equal(f.inputs.url, "https://github.example/deevnet/images/releases/download/v2026.11.25/debian-12-minimal-v2026.11.25.qcow2");
        assert.doesNotMatch(String(f.inputs.url), /dvnt\.internal/);
        assert.equal(f.inputs.checksum, fakeSha("debian-12-minimal@v2026.11.25"));
        assert.equal(f.inputs.nodeName, "pvem1");
        const vm = m.ofType(VM)[0];
        assert.ok((vm.inputs.vmId as number) >= 9100 && (vm.inputs.vmId as number) <= 9199);
        assert.equal((m.outputs.images as Record<string, { reusedFrom: string }>)["debian-12-minimal"].reusedFrom, "organization/image-factory/dvnt");
        assert.deepEqual((m.outputs.passes as Record<string, unknown>)["3"], undefined, "dvntm stops at maxPass 2");
    });

    it("dvnt has one GitHub release writer: every released image's entry goes into one publication, and its URLs come from it", () => {
        const pubs = dvnt.ofType(`${DYN}GithubReleasePublication`);
        assert.equal(pubs.length, 1);
        const uploads = dvnt.ofType(`${DYN}GithubReleaseUpload`);
        const entries = pubs[0].inputs.entries as Array<{ image: string }>;
        assert.deepEqual(entries.map((e) => e.image).sort(), uploads.map((u) => u.name.replace(/-release-upload$/, "")).sort());
        assert.ok(entries.length >= 2);
        const images = dvnt.outputs.images as Record<string, { releaseAssetUrl: string | null }>;
        assert.equal(images["debian-12-minimal"].releaseAssetUrl, "https://github.example/deevnet/images/releases/download/v2026.11.25/debian-12-minimal-v2026.11.25.qcow2");
        const meta = dvnt.ofType(`${DYN}ReleaseMetadata`).find((r) => r.name === "debian-12-minimal-release-metadata")!;
        assert.equal((meta.inputs.record as { qcow2: { assetUrl: string } }).qcow2.assetUrl, images["debian-12-minimal"].releaseAssetUrl);
    });

    it("refuses imageSource: release for images the stack builds itself, naming the fix", async () => {
        const cfg = stackConfig("dvnt");
        await assert.rejects(runProgram("dvnt", { ...cfg, "factory:proxmox": { ...(cfg["factory:proxmox"] as object), imageSource: "release" } }),
            /debian-12-minimal: factory:proxmox\.imageSource: release is for images reused from another stack \(factory:reuse\).*remove imageSource \(default store\)/s);
    });

    it("the local stack has no resource that needs a provider plugin", async () => {
        const local = await runProgram("local", { ...stackConfig("local"), "factory:bootstrapUser": { name: "ansible", sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t"] } });
        const types = new Set(local.resources.map((r) => r.type));
        for (const t of types) {
            assert.ok(t.startsWith("pulumi-nodejs:dynamic/") || t.startsWith("image-factory:") || t === "pulumi:pulumi:Stack", `local needs a plugin for ${t}`);
        }
        assert.ok(types.has(`${DYN}ImageBuild`));
    });

    it("allocation and rotation rules (lib/vmids)", () => {
        const policy = { range: [9000, 9002] as [number, number], blocks: {}, keepLast: 2 };
        const a = allocateVmid("img", "v1", [], policy);
        const b = allocateVmid("img", "v2", [{ image: "img", version: "v1", vmid: a, name: "x", sha256: "s" }], policy);
        assert.notEqual(a, b);
        assert.equal(allocateVmid("img", "v1", [{ image: "img", version: "v1", vmid: a, name: "x", sha256: "s" }], policy), a);
        const full = [9000, 9001, 9002].map((vmid, i) => ({ image: "o", version: `v${i}`, vmid, name: "x", sha256: "s" }));
        assert.throws(() => allocateVmid("img", "v9", full, policy), /no free VM id for img v9 in 9000-9002 .*widen factory:proxmox\.vmidRange/);
        const r = rotate({ image: "img", version: "v3", vmid: 1, name: "", sha256: "" }, [
            { image: "img", version: "v2", vmid: 2, name: "", sha256: "" }, { image: "img", version: "v1", vmid: 3, name: "", sha256: "" }], 2);
        assert.deepEqual([r.kept.map((k) => k.version), r.retired.map((k) => k.version)], [["v3", "v2"], ["v1"]]);
        assert.equal(templateName("tpl-{image}-{version}", "Img", "v2026.01.02.1"), "tpl-img-v2026-01-02-1");
    });

    it("VM ids never collide with the cluster's VMs; images outside a block never take a block's ids; a foreign VM in an image's block is named", () => {
        const policy = { range: [9000, 9009] as [number, number], blocks: { minimal: 9000 }, keepLast: 2 }; // minimal: 9000-9003
        // Every id of the range but one is held by some VM of the cluster or by minimal's block: that one is taken.
        const cluster = [9004, 9005, 9006, 9007, 9009].map((vmid) => ({ vmid, name: `vm${vmid}`, node: "pve1", tags: "" }));
        assert.equal(allocateVmid("platform", "v1", [], policy, cluster), 9008);
        assert.throws(() => allocateVmid("platform", "v1", [], policy, [...cluster, { vmid: 9008 }]), /no free VM id for platform v1 in 9000-9009 \(taken by kept templates or other VMs of the cluster\)/);
        // 9000 is the id most guides give their own template: inside minimal's block it fails, naming the VM.
        assert.throws(() => allocateVmid("minimal", "v1", [], policy, [{ vmid: 9000, name: "ubuntu-template", node: "pve1", tags: "" }]),
            /factory:proxmox\.vmids\.minimal reserves 9000-9003 for minimal's templates, but VM 9000 \(ubuntu-template on pve1\) is not one of them: move that VM, or give minimal another block/);
        // minimal's own templates in its block are fine, and its earlier versions' ids are skipped.
        const ours = [{ vmid: 9000, tags: "if-minimal;v2026.01.01" }, { vmid: 9001, tags: "if-minimal;v2026.01.02" }];
        assert.ok([9002, 9003].includes(allocateVmid("minimal", "v2026.01.03", [], policy, ours)));
        // A template of this very version the records lost keeps its id (the create is then refused, not doubled).
        assert.equal(allocateVmid("minimal", "v2026.01.02", [], policy, ours), 9001);
        assert.throws(() => allocateVmid("minimal", "v1", [], { ...policy, blocks: { minimal: 9000, platform: 9002 } }),
            /factory:proxmox\.vmids: blocks overlap \(minimal 9000-9003 and platform 9002-9005\)/);
    });
});

describe("README's Proxmox privilege table", () => {
    it("is requiredAcl's, row by row (paths, privileges, the network alternative)", () => {
        const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
        const lines = readme.slice(readme.indexOf("| path | privileges | why |")).split("\n").slice(2);
        const rows = lines.slice(0, lines.findIndex((l) => !l.startsWith("|"))).map((l) => l.split("|").map((c) => c.trim()));
        const need = requiredAcl({ node: "<node>", imageStorage: "<imageStorage>", diskStorage: "<diskStorage>", bridge: "<bridge>" });
        assert.deepEqual(rows.map((r) => r[1]), need.map((n) => `\`${n.path}\``));
        for (const [i, n] of need.entries()) {
            const privs = [...rows[i][2].matchAll(/`([A-Za-z.]+)`/g)].map((m) => m[1]);
            assert.deepEqual(privs, [...n.privileges, ...(n.or ? [...n.or.privileges] : [])], n.path);
        }
        // The role line of the pveum recipe grants every privilege of the table.
        const role = /pveum role add ImageFactory --privs "([^"]+)"/.exec(readme)?.[1].split(" ") ?? [];
        assert.deepEqual([...role].sort(), [...new Set(need.flatMap((n) => n.privileges))].sort());
    });
});
