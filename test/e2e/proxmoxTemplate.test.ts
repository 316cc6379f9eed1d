// @slow: ProxmoxTemplate and TemplateRetention through the real engine and the real proxmoxve plugin
// (tools/pulumi-resource-proxmoxve, bpg's Terraform provider bridged), against a Proxmox VE API on loopback
// (fakepve with our launcher's download-url, import-from and linked-clone behaviour). No mocks.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { startFakePve, type FakePve } from "../helpers/fakePve";
import { localStack, type LocalStack } from "../helpers/localStack";

interface ImageOut { version: string; sha256: string; size: number; storePath: string; qcow2Url: string; proxmox?: { node: string; vmid: number; name: string } }
interface VmConfig { [k: string]: string | number | undefined }

describe("ProxmoxTemplate through pulumi up with the real proxmoxve plugin @slow", function () {
    this.timeout(1_800_000);
    let pve: FakePve;
    let env: LocalStack;
    let image: ImageOut;
    const proxmox = (url: string, extra: Record<string, unknown> = {}) => JSON.stringify({
        endpoint: `${url}/`, insecure: true, node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0",
        vmidRange: [9000, 9099], keepLast: 2, ...extra,
    });

    before(async () => {
        pve = await startFakePve();
        env = await localStack({ config: [["factory:proxmox", proxmox(pve.url)]] });
        await env.project.setConfig("local", "factory:proxmoxApiToken", pve.token, { secret: true });
    });
    after(async () => {
        await env?.close();
        await pve?.close();
    });

    it("up: the node downloads the stored qcow2 with the build's sha256 and a template is made from it", async () => {
        const up = await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"]);
        assert.match(up.stdout, /proxmoxve:download:File debian-12-minimal-proxmox-image created/);
        if (process.env.IF_DEBUG_PVE) fs.writeFileSync(process.env.IF_DEBUG_PVE, JSON.stringify(await pve.requests(), null, 1));
        image = ((await env.project.outputs("local")).images as Record<string, ImageOut>)["debian-12-minimal"];
        assert.ok(image.proxmox, `no proxmox output: ${JSON.stringify(image)}`);

        const downloads = await pve.downloads();
        assert.equal(downloads.length, 1, JSON.stringify(downloads));
        const d = downloads[0];
        const stored = fs.readFileSync(image.storePath);
        assert.equal(d.result, "OK");
        assert.equal(d.sha256, image.sha256, "the node must have fetched the exact bytes the build made");
        assert.equal(d.sha256, crypto.createHash("sha256").update(stored).digest("hex"));
        assert.equal(d.bytes, image.size);
        assert.equal(d.url, image.qcow2Url);
        assert.equal(d.content, "import");

        const { node, vmid, name } = image.proxmox;
        assert.equal(node, "pve1");
        assert.equal(name, `tpl-debian-12-minimal-${image.version.replace(/\./g, "-")}`, "VM names are DNS names: dots become dashes");
        const cfg = await pve.api<VmConfig>("GET", `/nodes/pve1/qemu/${vmid}/config`);
        assert.equal(cfg.template, 1);
        assert.equal(cfg.name, name);
        assert.match(String(cfg.scsi0), /^local-lvm:base-\d+-disk-\d+,.*size=8G/, "the imported disk, grown to the provider's 8 GiB, became the template's base volume");
        assert.match(String(cfg.ide2), /cloudinit|media=cdrom/);
        assert.equal(cfg.serial0, "socket");
        assert.match(String(cfg.agent), /^(1|enabled=1)/);
        const tags = String(cfg.tags).split(/[;,]/);
        assert.ok(tags.includes("if-debian-12-minimal"), String(cfg.tags));
        assert.ok(tags.includes(image.version.toLowerCase()), String(cfg.tags));
        assert.match(String(cfg.description), new RegExp(image.sha256));
    });

    it("a second up has no changes", async () => {
        const again = await env.project.pulumi(["preview", "--stack", "local", "--expect-no-changes", "--diff"]);
        assert.equal(again.exitCode, 0);
    });
});
