// lib/proxmoxApi and the two dynamic providers that use it (ProxmoxAccess, TemplateRetention), called as the engine
// calls them, against the Proxmox VE API on loopback: real HTTP, TLS, tokens, tasks with real exit statuses.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { deleteVm, listVms, missingPrivileges, requiredGrants } from "../../lib/publish/proxmoxApi";
import { provider as accessProvider, type ProxmoxAccessInputs } from "../../providers/proxmoxAccess";
import { provider as retentionProvider, type TemplateRetentionInputs } from "../../providers/templateRetention";
import { startFakePve, type FakePve } from "../helpers/fakePve";

describe("Proxmox API client, access check and template retention against a loopback Proxmox VE", function () {
    this.timeout(120_000);
    const limited = "ci@pve!limited=" + "limited-secret-0123456789";
    let pve: FakePve;
    let server: http.Server;
    let dir: string;
    let imageUrl: string;

    const target = () => ({ endpoint: `${pve.url}/`, apiToken: pve.token, insecure: true });
    /** A template from the served qcow2, tagged as `tags`, as ProxmoxTemplate makes it. */
    async function template(vmid: number, tags: string, file: string): Promise<void> {
        const dl = await pve.api<string>("POST", "/nodes/pve1/storage/local/download-url", { url: imageUrl, filename: file, content: "import" });
        assert.equal(await pve.waitTask(dl), "OK");
        const create = await pve.api<string>("POST", "/nodes/pve1/qemu", { vmid, name: `t${vmid}`, tags, scsi0: `local-lvm:0,import-from=local:import/${file}` });
        assert.equal(await pve.waitTask(create), "OK");
        assert.equal(await pve.waitTask(await pve.api<string>("POST", `/nodes/pve1/qemu/${vmid}/template`)), "OK");
    }

    before(async () => {
        pve = await startFakePve({ identities: [{ token: limited, grants: [["/", ["Sys.Audit"]], ["/vms", ["VM.Audit"]]] }] });
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-pveapi-"));
        await execa("qemu-img", ["create", "-f", "qcow2", path.join(dir, "img.qcow2"), "1G"]);
        server = http.createServer((req, res) => fs.createReadStream(path.join(dir, "img.qcow2")).pipe(res));
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        imageUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/img.qcow2`;
    });
    after(async () => {
        await pve?.close();
        server?.close();
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it("the access check passes for the least-privilege factory@pve!ci token, names the missing privileges for a limited one", async () => {
        const inputs: ProxmoxAccessInputs = { endpoint: `${pve.url}/`, apiToken: pve.token, insecure: true, node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0" };
        const ok = { outs: (await accessProvider.create!(inputs)).outs! };
        assert.equal(ok.outs.tokenId, "factory@pve!ci");
        assert.equal(JSON.stringify(ok.outs).includes(pve.token.split("=")[1]), false, "the secret must not be in the outputs");
        assert.deepEqual(await missingPrivileges(target(), inputs), []);

        await assert.rejects(accessProvider.create!({ ...inputs, apiToken: limited }),
            /^UserError: Proxmox pve1 at .* is not ready for templates:\n  - the token ci@pve!limited of factory:proxmoxApiToken lacks Sys\.AccessNetwork on \/nodes\/pve1 \(or Sys\.Audit and Sys\.Modify on \/\); Datastore\.AllocateTemplate, Datastore\.Audit, Datastore\.Allocate on \/storage\/local; Datastore\.AllocateSpace, Datastore\.Audit on \/storage\/local-lvm; VM\.Allocate, .* on \/vms; SDN\.Use on \/sdn\/zones\/localnetwork\/vmbr0/);
    });

    it("each privilege of the README's table, taken away in turn, is named; a token holds only what its user holds too", async () => {
        const placement = { node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0" };
        const all = requiredGrants(placement);
        const cases = all.flatMap(([p, privs]) => privs.map((priv) => ({ p, priv, token: `factory@pve!minus-${p.replace(/\W/g, "")}-${priv.replace(/\W/g, "")}=s3cret` })));
        const narrow = await startFakePve({
            identities: [
                ...cases.map((c) => ({ token: c.token, grants: all.map(([p, privs]) => [p, p === c.p ? privs.filter((x) => x !== c.priv) : privs] as [string, string[]]) })),
                // The token holds everything, its user lacks VM.Config.HWType: privilege separation intersects them.
                { token: "lab@pve!separated=s3cret", grants: all, userGrants: all.map(([p, privs]) => [p, privs.filter((x) => x !== "VM.Config.HWType")] as [string, string[]]) },
                // Without privilege separation the token has its user's rights, whatever its own ACL.
                { token: "lab2@pve!shared=s3cret", grants: [], privsep: false, userGrants: all },
            ],
        });
        try {
            const inputs: ProxmoxAccessInputs = { endpoint: `${narrow.url}/`, apiToken: narrow.token, insecure: true, ...placement };
            for (const c of cases) {
                const err = await accessProvider.create!({ ...inputs, apiToken: c.token }).then(() => undefined, (e: Error) => e);
                // The node's network right has an alternative; the others are named as they are.
                const expected = c.p === "/nodes/pve1" ? `${c.priv} on ${c.p} (or Sys.Audit and Sys.Modify on /)` : `${c.priv} on ${c.p}`;
                assert.ok(err && err.message.includes(`lacks ${expected}`), `${c.priv} on ${c.p}: ${err?.message ?? "accepted"}`);
            }
            await assert.rejects(accessProvider.create!({ ...inputs, apiToken: "lab@pve!separated=s3cret" }), /lacks VM\.Config\.HWType on \/vms/);
            assert.equal((await accessProvider.create!({ ...inputs, apiToken: "lab2@pve!shared=s3cret" })).outs?.tokenId, "lab2@pve!shared");
        } finally {
            await narrow.close();
        }
    });

    it("a root token works too; the broad Sys.Audit + Sys.Modify on / stands in for Sys.AccessNetwork", async () => {
        const root = await startFakePve({ root: true });
        const broad = await startFakePve({ grants: requiredGrants({ node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0" })
            .map(([p, privs]) => (p === "/nodes/pve1" ? ["/", ["Sys.Audit", "Sys.Modify"]] : [p, privs]) as [string, string[]]) });
        try {
            for (const f of [root, broad]) {
                const outs = (await accessProvider.create!({ endpoint: `${f.url}/`, apiToken: f.token, insecure: true, node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0" })).outs;
                assert.equal(outs?.node, "pve1");
            }
        } finally {
            await Promise.all([root.close(), broad.close()]);
        }
    });

    it("a node before PVE 8.4 and an image storage without import content are named, each with its fix, at once", async () => {
        const old = await startFakePve({ pveVersion: "8.3", importStorages: [] });
        const plain = await startFakePve({ importStorages: [] });
        try {
            const args = (f: FakePve): ProxmoxAccessInputs => ({ endpoint: `${f.url}/`, apiToken: f.token, insecure: true, node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0" });
            await assert.rejects(accessProvider.create!(args(old)), (e: Error) =>
                /Proxmox VE 8\.3\.5 on pve1 cannot download disk images for import \(content type import came with PVE 8\.4\): upgrade the node/.test(e.message) &&
                /storage local \(factory:proxmox\.imageStorage\) does not take content type import \(it has iso,vztmpl,backup\): pvesm set local --content iso,vztmpl,backup,import/.test(e.message));
            await assert.rejects(accessProvider.create!(args(plain)), /pvesm set local --content iso,vztmpl,backup,import/);
            // And the node itself refuses what the check warns of: download-url of an import on 8.3.
            await assert.rejects(old.api("POST", "/nodes/pve1/storage/local/download-url", { url: imageUrl, filename: "x.qcow2", content: "import" }), /400.*enumeration/);
        } finally {
            await Promise.all([old.close(), plain.close()]);
        }
    });

    it("a wrong token, a missing node, a malformed token and an unreachable endpoint each fail naming the fix", async () => {
        const inputs: ProxmoxAccessInputs = { endpoint: `${pve.url}/`, apiToken: "factory@pve!ci=wrong", insecure: true, node: "pve1", imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0" };
        await assert.rejects(accessProvider.create!(inputs), /refused the token \(401\): set factory:proxmoxApiToken \(pulumi config set --secret\)/);
        await assert.rejects(accessProvider.create!({ ...inputs, apiToken: pve.token, node: "pve9" }), /Proxmox node pve9 \(factory:proxmox\.node\) is not in the cluster at .*; it has: pve1/);
        await assert.rejects(accessProvider.create!({ ...inputs, apiToken: "secret-only" }), /factory:proxmoxApiToken must be a Proxmox API token user@realm!tokenid=secret/);
        await assert.rejects(accessProvider.create!({ ...inputs, apiToken: pve.token, endpoint: "https://127.0.0.1:9/" }),
            /Proxmox API https:\/\/127\.0\.0\.1:9\/ unreachable: .*ECONNREFUSED.*check factory:proxmox\.endpoint/);
    });

    it("a TLS certificate that does not verify is refused unless insecure is set", async () => {
        await assert.rejects(listVms({ ...target(), insecure: false }, "pve1"), /unreachable: self[- ]signed certificate/);
        assert.ok(Array.isArray(await listVms(target(), "pve1")));
    });

    it("retention deletes this image's retired template, keeps one a linked clone uses, leaves an untagged VM alone", async () => {
        await template(9001, "if-img;v1", "img-v1.qcow2");
        await template(9002, "if-img;v2", "img-v2.qcow2");
        await template(9003, "other", "other.qcow2");
        assert.equal(await pve.waitTask(await pve.api<string>("POST", "/nodes/pve1/qemu/9002/clone", { newid: 9102, name: "uses-v2" })), "OK");
        const rec = (vmid: number, version: string) => ({ image: "img", version, vmid, name: `tpl-img-${version}`, sha256: "0".repeat(64) });
        const inputs: TemplateRetentionInputs = { endpoint: `${pve.url}/`, apiToken: pve.token, insecure: true, node: "pve1", image: "img",
            retired: [rec(9001, "v1"), rec(9002, "v2"), rec(9003, "v3"), rec(9004, "v4")] };

        const r = { outs: (await retentionProvider.create!(inputs)).outs! };
        assert.deepEqual(r.outs.deleted, [9001]);
        assert.deepEqual(r.outs.keptInUse.map((k) => k.vmid), [9002]);
        assert.match(r.outs.keptInUse[0].reason, /^Proxmox did not delete VM 9002: base volume 'local-lvm:base-9002-disk-0' is still in use by linked cloned$/);
        assert.deepEqual(r.outs.leftAlone.map((k) => k.vmid), [9003]);
        const left = (await listVms(target(), "pve1")).map((v) => v.vmid).sort();
        assert.deepEqual(left, [9002, 9003, 9102]);
        assert.equal("apiToken" in r.outs, false);

        // Kept in use: the next run tries again (a diff), and once the clone is gone the template goes.
        const diff = await retentionProvider.diff!("pve1/img", r.outs, { ...inputs, retired: [rec(9002, "v2")] });
        assert.equal(diff.changes, true);
        await deleteVm(target(), "pve1", 9102);
        const again = { outs: (await retentionProvider.update!("pve1/img", r.outs, { ...inputs, retired: [rec(9002, "v2")] })).outs! };
        assert.deepEqual([again.outs.deleted, again.outs.keptInUse], [[9002], []]);
        const settled = await retentionProvider.diff!("pve1/img", again.outs, { ...inputs, retired: [rec(9002, "v2")] });
        assert.equal(settled.changes, false, "nothing left to retry");
        const dropped = await retentionProvider.diff!("pve1/img", again.outs, { ...inputs, retired: [] });
        assert.equal(dropped.changes, false, "a template deleted last run leaving the records is no work");
        // In a preview whose new version is still to be built, `retired` is the engine's unknown placeholder.
        const unknown = await retentionProvider.diff!("pve1/img", again.outs, { ...inputs, retired: "04da6b54-80e4-46f7-96ec-b56ff0331ba9" as unknown as [] });
        assert.equal(unknown.changes, true);
        const fresh = await retentionProvider.diff!("pve1/img", again.outs, { ...inputs, retired: [rec(9005, "v5")] });
        assert.equal(fresh.changes, true, "a newly retired template is work");
    });

    it("deleteVm waits for the task and reports its real exit status", async () => {
        await assert.rejects(deleteVm(target(), "pve1", 4242), /HTTP 500|does not exist/);
        await deleteVm(target(), "pve1", 9003);
        assert.equal((await listVms(target(), "pve1")).some((v) => v.vmid === 9003), false);
    });
});
