// @slow: ProxmoxTemplate and TemplateRetention through the real engine and the real proxmoxve plugin
// (tools/pulumi-resource-proxmoxve, bpg's Terraform provider bridged), against a Proxmox VE API on loopback
// (fakepve with our launcher's download-url, import-from and linked-clone behaviour). No mocks.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as http from "node:http";
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
        // Tasks run a while after their UPID came back, as PVE's workers do: the plugin must poll them.
        pve = await startFakePve({ taskSeconds: 1 });
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
        assert.doesNotMatch(JSON.stringify(cfg), /"ide\d":"cdrom,/, "no physical cdrom passthrough");
        // The independent proof that the template holds the image: its disk compared with the published qcow2.
        const volid = String(cfg.scsi0).split(",")[0];
        const vol = await pve.volume(volid);
        assert.ok(vol.file, `${volid} has no bytes on the node`);
        const compared = await execa("qemu-img", ["compare", "-f", "qcow2", "-F", vol.format, image.storePath, vol.file], { reject: false });
        assert.equal(compared.exitCode, 0, `the template's disk differs from the image: ${compared.stdout}${compared.stderr}`);
        assert.match(compared.stdout, /Images are identical/);
    });

    it("a second up has no changes", async () => {
        const again = await env.project.pulumi(["preview", "--stack", "local", "--expect-no-changes", "--diff"]);
        assert.equal(again.exitCode, 0);
    });

    it("pulumi refresh notices a template deleted out of band, and the next up puts it back", async () => {
        const { vmid } = image.proxmox!;
        assert.equal(await pve.waitTask(await pve.api<string>("DELETE", `/nodes/pve1/qemu/${vmid}`)), "OK");
        const refresh = await env.project.pulumi(["refresh", "--yes", "--stack", "local", "--skip-preview"]);
        assert.match(refresh.stdout, /proxmoxve:index:VmLegacy debian-12-minimal-proxmox-template deleted/);
        await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"]);
        const cfg = await pve.api<VmConfig>("GET", `/nodes/pve1/qemu/${vmid}/config`);
        assert.equal(cfg.template, 1);
        assert.equal((await pve.downloads()).length, 1, "the downloaded image is still there: no second download");
        await env.project.pulumi(["preview", "--stack", "local", "--expect-no-changes"]);
    });

    it("a new version adds a template beside the old one; the oldest beyond keepLast is retired, but not while a linked clone uses it", async () => {
        const old = image.proxmox!;
        assert.equal(await pve.waitTask(await pve.api<string>("POST", `/nodes/pve1/qemu/${old.vmid}/clone`, { newid: 9098, name: "uses-old-template" })), "OK");
        await env.project.setConfig("local", "factory:proxmox", proxmox(pve.url, { keepLast: 1 }));
        await env.project.setConfig("local", "factory:version", "v2030.01.01");
        const up = await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"]);
        assert.match(up.stdout, /kept template \d+ \(v\d{4}\.\d\d\.\d\d\): Proxmox did not delete VM \d+: base volume '[^']+' is still in use by linked cloned/);
        const next = ((await env.project.outputs("local")).images as Record<string, ImageOut>)["debian-12-minimal"];
        assert.equal(next.version, "v2030.01.01");
        assert.notEqual(next.proxmox!.vmid, old.vmid);
        const vms = await pve.api<Array<{ vmid: number; template?: number }>>("GET", "/nodes/pve1/qemu");
        assert.deepEqual(vms.map((v) => v.vmid).sort(), [old.vmid, next.proxmox!.vmid, 9098].sort(), "old and new template side by side, plus the clone");
        const records = ((await env.project.outputs("local")).proxmox as { templates: Record<string, Array<{ vmid: number }>> }).templates["debian-12-minimal"];
        assert.deepEqual(records.map((r) => r.vmid), [next.proxmox!.vmid, old.vmid], "the template in use stays in the records, to be retired later");

        // The clone is gone: the next up retires the old template; after that, nothing to do.
        assert.equal(await pve.waitTask(await pve.api<string>("DELETE", "/nodes/pve1/qemu/9098")), "OK");
        const retry = await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"]);
        assert.match(retry.stdout, new RegExp(`retired template ${old.vmid} `));
        const after = await pve.api<Array<{ vmid: number }>>("GET", "/nodes/pve1/qemu");
        assert.deepEqual(after.map((v) => v.vmid), [next.proxmox!.vmid]);
        await env.project.pulumi(["preview", "--stack", "local", "--expect-no-changes"]);
    });
});

describe("ProxmoxTemplate refuses bad input through pulumi up @slow", function () {
    this.timeout(1_800_000);
    let pve: FakePve;
    let env: LocalStack;
    let tamper: http.Server;

    before(async () => {
        pve = await startFakePve();
        env = await localStack();
        await env.project.setConfig("local", "factory:proxmoxApiToken", pve.token, { secret: true });
        // Serves what the store has, with one byte changed: a store that hands out other bytes than the build made.
        tamper = http.createServer((req, res) => {
            http.get(`${env.baseUrl}${req.url}`, (up) => {
                const chunks: Buffer[] = [];
                up.on("data", (c: Buffer) => chunks.push(c)).on("end", () => {
                    const body = Buffer.concat(chunks);
                    if (body.length > 1000) body[1000] ^= 0xff;
                    res.writeHead(up.statusCode ?? 500, { "content-length": body.length });
                    res.end(req.method === "HEAD" ? undefined : body);
                });
            });
        });
        await new Promise<void>((r) => tamper.listen(0, "127.0.0.1", r));
    });
    after(async () => {
        tamper?.close();
        await env?.close();
        await pve?.close();
    });

    const configure = async (extra: Record<string, unknown> = {}) =>
        env.project.setConfig("local", "factory:proxmox", JSON.stringify({ endpoint: `${pve.url}/`, insecure: true, node: "pve1", keepLast: 2, ...extra }));

    it("a wrong token fails before anything is downloaded, naming factory:proxmoxApiToken", async () => {
        await configure();
        await env.project.setConfig("local", "factory:proxmoxApiToken", "root@pam!ci=wrong-secret", { secret: true });
        const up = await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"], { reject: false });
        assert.notEqual(up.exitCode, 0);
        assert.match(up.all, /refused the token \(401\): set factory:proxmoxApiToken/);
        assert.equal(up.all.includes("wrong-secret"), false, "the token must not be printed");
        assert.deepEqual(await pve.downloads(), []);
        await env.project.setConfig("local", "factory:proxmoxApiToken", pve.token, { secret: true });
    });

    it("an unreachable endpoint fails naming it", async () => {
        await configure({ endpoint: "https://127.0.0.1:9/" });
        const up = await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"], { reject: false });
        assert.notEqual(up.exitCode, 0);
        assert.match(up.all, /Proxmox API https:\/\/127\.0\.0\.1:9\/ unreachable: .*check factory:proxmox\.endpoint/);
    });

    it("bytes other than the build's fail the download naming the image and both digests; no template, no orphan VM, no file", async () => {
        await configure();
        const port = (tamper.address() as { port: number }).port;
        const storePort = Number(new URL(env.baseUrl).port);
        await env.project.setConfig("local", "factory:artifactStore", JSON.stringify({ root: env.storeRoot, port: storePort, publicBaseUrl: `http://127.0.0.1:${port}` }));
        const up = await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"], { reject: false });
        assert.notEqual(up.exitCode, 0);
        const stored = execa.sync("find", [env.storeRoot, "-name", "*.qcow2"]).stdout.trim();
        const image = crypto.createHash("sha256").update(fs.readFileSync(stored)).digest("hex");
        assert.match(up.all, new RegExp(`debian-12-minimal-proxmox-image[\\s\\S]*checksum mismatch: got '[0-9a-f]{64}' != expect '${image}'`));
        const [d] = await pve.downloads();
        assert.match(d.result, /^checksum mismatch/);
        assert.notEqual(d.sha256, image);
        assert.deepEqual(await pve.api("GET", "/nodes/pve1/qemu"), []);
        assert.deepEqual(await pve.api("GET", "/nodes/pve1/storage/local/content"), []);
    });
    it("a task that fails after running (its UPID came back, then it stopped with an error) fails the up with the task's exit status; the next up converges", async () => {
        const failing = await startFakePve({ taskSeconds: 1, failTasks: { qmcreate: "unable to create VM - zfs error: cannot create 'rpool/data/vm-disk-0': out of space" } });
        try {
            await env.project.setConfig("local", "factory:proxmoxApiToken", failing.token, { secret: true });
            await configure({ endpoint: `${failing.url}/` });
            // The store as the node should see it again (the test before served it through a tampering proxy).
            await env.project.setConfig("local", "factory:artifactStore", JSON.stringify({ root: env.storeRoot, port: Number(new URL(env.baseUrl).port), publicBaseUrl: env.baseUrl }));
            const up = await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"], { reject: false });
            assert.notEqual(up.exitCode, 0);
            assert.match(up.all, /debian-12-minimal-proxmox-template[\s\S]*zfs error: cannot create 'rpool\/data\/vm-disk-0': out of space/);
            const again = await env.project.pulumi(["up", "--yes", "--stack", "local", "--skip-preview"], { reject: false });
            assert.equal(again.exitCode, 0, again.all.slice(-3000));
            const vms = await failing.api<Array<{ vmid: number; template?: number }>>("GET", "/nodes/pve1/qemu");
            assert.equal(vms.filter((v) => v.template).length, 1);
        } finally {
            await env.project.setConfig("local", "factory:proxmoxApiToken", pve.token, { secret: true });
            await failing.close();
        }
    });
});
