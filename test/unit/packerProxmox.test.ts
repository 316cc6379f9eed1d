// Packer → Proxmox (FR-2) where no Proxmox VE can run: the program's graph under setMocks (what the build is
// handed), and the provider's real code path up to a stand-in `packer` on PATH that records how it was called.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { apiUrl, manifestVmid, splitApiToken } from "../../lib/stages/packerProxmox";
import { checkOutputs } from "../../lib/outputsContract";
import { createTemplate } from "../../providers/packerProxmoxTemplate";
import { fakeSha, runProgram, stackConfig, type MockRun } from "../helpers/mockProgram";
import { REPO_ROOT } from "../helpers/setup";

const DYN = "pulumi-nodejs:dynamic/image-factory:";

describe("Packer → Proxmox templates (FR-2)", function () {
    this.timeout(120_000);
    let dvnt: MockRun;
    before(async () => {
        dvnt = await runProgram("dvnt", { ...stackConfig("dvnt"), "factory:proxmoxApiToken": "factory@pve!packer=11111111-2222-3333-4444-555555555555" });
    });

    it("clones the template ProxmoxTemplate made of the base image, on the configured node, with a fresh VM id", () => {
        const [build] = dvnt.ofType(`${DYN}PackerProxmoxTemplate`);
        assert.ok(build, "no PackerProxmoxTemplate in dvnt");
        const spec = build.inputs.spec as Record<string, unknown>;
        const baseVm = dvnt.ofType("proxmoxve:index/vmLegacy:VmLegacy").find((v) => v.name === "debian-12-minimal-proxmox-template")!;
        assert.equal(spec.cloneName, baseVm.inputs.name);
        assert.equal(spec.node, "pve1");
        assert.equal(spec.endpoint, "https://pve1.dvnt.internal:8006/");
        assert.equal(spec.templateName, "tpl-debian-12-minimal-pve-v2026-11-25");
        assert.equal(spec.sshPrivateKeyFile, "/srv/image-factory/secrets/bootstrap_ed25519");
        assert.equal(spec.playbook, path.join(REPO_ROOT, "images/debian-12-minimal-pve/playbook.yml"));
        const vmid = spec.vmid as number;
        assert.ok(vmid >= 9000 && vmid <= 9099, String(vmid));
        assert.notEqual(vmid, baseVm.inputs.vmId);
        assert.equal(build.inputs.sha256, fakeSha("debian-12-minimal@v2026.11.25"));
        // The token reaches the provider as a secret (the SDK's secret signature wraps it in the registration).
        const token = build.inputs.apiToken as Record<string, unknown>;
        assert.equal(token["4dabf18193072939515e22adb298388d"], "1b47061264138c4ac30d75fd1eb44270");
        assert.equal(token.value, "factory@pve!packer=11111111-2222-3333-4444-555555555555");
    });

    it("its outputs say what it is: no sha256 it cannot vouch for, derivedFrom the base's, not gated; and pass the outputs contract", () => {
        const images = dvnt.outputs.images as Record<string, Record<string, unknown>>;
        const pve = images["debian-12-minimal-pve"];
        assert.equal(pve.format, "proxmox-template");
        assert.equal(pve.builtOn, "pve1");
        assert.deepEqual(Object.keys(pve.proxmox as object).sort(), ["name", "node", "vmid"]);
        assert.equal(pve.sha256, null, "Packer changed the disk on the node: the factory has no digest of it");
        assert.equal(pve.derivedFrom, images["debian-12-minimal"].sha256);
        assert.deepEqual((pve.validation as { checksRan: unknown[] }).checksRan, []);
        assert.match((pve.validation as { note: string }).note, /not booted by the boot gate/);
        const check = checkOutputs(dvnt.outputs);
        assert.ok(check.valid, check.problems.join("\n"));
    });

    it("runs packer with the token only in its environment, and reads the VM id from packer's manifest", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-pxp-"));
        const bin = path.join(dir, "bin");
        fs.mkdirSync(bin);
        // Stand-in packer: records argv and PROXMOX_TOKEN, writes the manifest the real post-processor would.
        fs.writeFileSync(path.join(bin, "packer"), `#!/bin/sh
printf '%s\\n' "$@" > "${dir}/argv"
printf '%s' "$PROXMOX_TOKEN" > "${dir}/token"
varfile=$(printf '%s\\n' "$@" | sed -n 's/^-var-file=//p')
manifest=$(node -e 'console.log(require(process.argv[1]).manifest)' "$varfile")
printf '{"builds":[{"name":"image","builder_type":"proxmox-clone","artifact_id":"9042"}]}' > "$manifest"
echo "==> proxmox-clone.image: Creating VM"
`, { mode: 0o755 });
        const key = path.join(dir, "key");
        fs.writeFileSync(key, "not a real key\n");
        const oldPath = process.env.PATH;
        process.env.PATH = `${bin}:${oldPath}`;
        try {
            const out = await createTemplate({
                buildKey: "a".repeat(64), apiToken: "factory@pve!packer=s3cr3t-value", workDir: dir, sha256: "b".repeat(64),
                spec: {
                    name: "debian-12-minimal-pve", imageDir: path.join(REPO_ROOT, "images/debian-12-minimal-pve"), template: path.join(REPO_ROOT, "images/debian-12-minimal-pve/proxmox.pkr.hcl"),
                    playbook: "playbook.yml", projectDir: REPO_ROOT, endpoint: "https://pve1.lab:8006", insecure: true, node: "pve1", bridge: "vmbr0", diskStorage: "local-lvm",
                    cloneName: "tpl-debian-12-minimal-v2026-11-25", vmid: 9042, templateName: "tpl-x", description: "d", sshUsername: "ansible", sshPrivateKeyFile: key,
                    ansibleRolesPath: ["/r"], extraVars: {},
                },
            });
            assert.deepEqual([out.node, out.vmid, out.name], ["pve1", 9042, "tpl-x"]);
            assert.equal("apiToken" in out, false, "the token is not an output");
            assert.equal(fs.readFileSync(path.join(dir, "token"), "utf8"), "s3cr3t-value");
            const argv = fs.readFileSync(path.join(dir, "argv"), "utf8");
            assert.ok(!argv.includes("s3cr3t"), "the secret is not in argv");
            const vars = JSON.parse(fs.readFileSync(argv.split("\n").find((a) => a.startsWith("-var-file="))!.slice(10), "utf8")) as Record<string, unknown>;
            assert.equal(vars.proxmox_username, "factory@pve!packer");
            assert.equal(vars.proxmox_url, "https://pve1.lab:8006/api2/json");
            assert.ok(!JSON.stringify(vars).includes("s3cr3t"), "the secret is not in the var file");
            assert.ok(!fs.readFileSync(out.logPath, "utf8").includes("s3cr3t"), "the secret is not in the build log");
        } finally {
            process.env.PATH = oldPath;
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("the other builders' bases: Pi images from the catalog's Raspberry Pi OS, builder-node from debian-12-minimal's build", () => {
        const builds = Object.fromEntries(dvnt.ofType(`${DYN}ImageBuild`).map((b) => [b.inputs.name as string, b.inputs]));
        const pi = (builds["sdr-pi"].request as { pi: { base: Record<string, unknown> }; format: string });
        assert.equal(pi.format, "img.xz");
        assert.deepEqual(pi.pi.base, { id: "raspios-bookworm-arm64-lite", version: "2025-05-13", path: "/cache/base/base-raspios-bookworm-arm64-lite-2025-05-13-fetch.img",
            sha256: fakeSha("base:base-raspios-bookworm-arm64-lite-2025-05-13-fetch") });
        const fetches = dvnt.ofType(`${DYN}BaseImageFetch`).map((f) => f.name);
        assert.deepEqual(fetches, ["base-raspios-bookworm-arm64-lite-2025-05-13-fetch"], "one fetch shared by both Pi images");
        const bn = builds["builder-node"].request as { packer: { base: Record<string, unknown> } };
        assert.deepEqual(bn.packer.base, { id: "image:debian-12-minimal", version: "this-stack", path: "/work/builds/debian-12-minimal.qcow2", sha256: fakeSha("debian-12-minimal@v2026.11.25") });
        for (const iso of ["debian-12-installer-iso", "nocloud-seed-iso"]) assert.equal((builds[iso].request as { format: string }).format, "iso");
        const components = dvnt.resources.map((r) => `${r.type}::${r.name}`);
        for (const c of ["image-factory:image:Image::sdr-pi", "image-factory:image:Image::nocloud-seed-iso", "image-factory:image:Image::builder-node",
            "image-factory:image:Image::debian-12-minimal-pve"]) assert.ok(components.includes(c), c);
    });

    it("refuses a malformed token and a manifest without a VM id, naming the fix", () => {
        assert.throws(() => splitApiToken("just-a-secret"), /user@realm!tokenid=secret/);
        assert.deepEqual(splitApiToken("root@pam!ci=abc-def"), { tokenId: "root@pam!ci", secret: "abc-def" });
        assert.equal(apiUrl("https://pve:8006"), "https://pve:8006/api2/json");
        assert.throws(() => manifestVmid('{"builds":[]}'), /names no VM id/);
        assert.equal(manifestVmid('{"builds":[{"artifact_id":"1"},{"artifact_id":"9100"}]}'), 9100);
    });
});
