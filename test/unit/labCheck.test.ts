// make lab.check (lib/labCheck.ts), check by check: tokens per enabled target, the state backend, the store's public
// URL proven with a probe through a real artifact server, the placeholder bootstrap key as its own finding.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import type * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { parseConfig } from "../../lib/config";
import { checkBackend, checkSecrets, checkStoreUrl, configFinding, secureKeysOf } from "../../lib/labCheck";
import { createArtifactServer } from "../../lib/publish/artifactServer";
import { stackConfig } from "../../lib/stackFile";
import { REPO_ROOT } from "../helpers/setup";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t";

describe("lib/labCheck: make lab.check", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-labcheck-"));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const dvnt = () => stackConfig("dvnt", REPO_ROOT, undefined, { placeholderKeys: "allow" });

    it("a token per enabled target, from the environment or a secret of the stack; a Proxmox token of the wrong shape is named", () => {
        const none = checkSecrets(dvnt(), {}, new Set());
        // ghcr.io, unless another test of this run exported OCI_REGISTRY (the mocked lab runs do).
        assert.deepEqual(none.filter((f) => f.status === "fail").map((f) => f.what),
            ["secrets passphrase", `OCI push to ${process.env.OCI_REGISTRY || "ghcr.io"}`, "GitHub release deevnet/images", "Proxmox pve1"]);
        assert.match(none.find((f) => f.what === "Proxmox pve1")?.detail ?? "", /PROXMOX_API_TOKEN_dvnt/);
        const env = { PULUMI_CONFIG_PASSPHRASE: "p", GHCR_TOKEN: "g", GITHUB_TOKEN: "t", PROXMOX_VE_API_TOKEN: "factory@pve!ci=00000000-1111" };
        assert.deepEqual(checkSecrets(dvnt(), env, new Set()).filter((f) => f.status !== "ok"), []);
        const bad = checkSecrets(dvnt(), { ...env, PROXMOX_VE_API_TOKEN: "just-a-secret" }, new Set());
        assert.match(bad.find((f) => f.status === "fail")?.detail ?? "", /PROXMOX_VE_API_TOKEN does not look like user@realm!tokenid=secret/);
        const secure = secureKeysOf("config:\n  factory:githubToken:\n    secure: v1:abc\n  factory:lab: dvnt\n");
        assert.deepEqual([...secure], ["factory:githubToken"]);
        assert.equal(checkSecrets(dvnt(), { ...env, GITHUB_TOKEN: "" }, secure).find((f) => f.what.startsWith("GitHub"))?.status, "ok");
        // The local stack's loopback registry needs no token; dvntm has no OCI or release target.
        const local = parseConfig({ lab: "local", bootstrapUser: { sshAuthorizedKeys: [KEY] }, oci: { registry: "127.0.0.1:5000", repository: "x", plainHttp: true } });
        assert.deepEqual(checkSecrets(local, { PULUMI_CONFIG_PASSPHRASE: "p" }, new Set()).map((f) => f.status), ["ok"]);
        const dvntm = stackConfig("dvntm", REPO_ROOT, undefined, { placeholderKeys: "allow" });
        assert.deepEqual(checkSecrets(dvntm, {}, new Set()).filter((f) => f.status === "fail").map((f) => f.what), ["secrets passphrase", "Proxmox pvem1"]);
    });

    it("a run's copy of the stack file reads as the engine hands it over: `pulumi config set` writes \"1\" for 1", () => {
        const copy = path.join(dir, "Pulumi.dvnt.yaml");
        fs.writeFileSync(copy, `${fs.readFileSync(path.join(REPO_ROOT, "Pulumi.dvnt.yaml"), "utf8")}  factory:maxPass: "1"\n  factory:version: v2026.12.06\n`);
        const c = stackConfig("dvnt", REPO_ROOT, copy, { placeholderKeys: "allow" });
        assert.equal(c.maxPass, 1);
        assert.equal(c.version, "v2026.12.06");
        assert.equal(c.proxmox?.vmidRange[0], 9000, "structured values stay structured");
    });

    it("the shipped placeholder key is one finding; the targets are still checked", () => {
        const r = configFinding(dvnt);
        assert.ok(r.config);
        assert.deepEqual(r.findings.map((f) => [f.status, f.what]), [["ok", "stack config"], ["fail", "bootstrap key"]]);
        assert.match(r.findings[1].detail, /factory:bootstrapUser\.sshAuthorizedKeys\[0\].*placeholder/);
        const broken = configFinding(() => parseConfig({ lab: "dvnt", maxPass: 9 }));
        assert.equal(broken.config, undefined);
        assert.ok(broken.findings.some((f) => f.status === "fail" && /factory:maxPass = 9/.test(f.detail)));
    });

    it("the state backend: unset or inside the checkout is refused; a file backend elsewhere answers", async () => {
        assert.match((await checkBackend("dvnt", REPO_ROOT, {})).detail, /PULUMI_BACKEND_URL is not set/);
        const inside = await checkBackend("dvnt", REPO_ROOT, { ...process.env, PULUMI_BACKEND_URL: `file://${REPO_ROOT}/.pulumi-state` });
        assert.equal(inside.status, "fail");
        assert.match(inside.detail, /inside the checkout: a runner's clean checkout deletes it/);
        const state = path.join(dir, "state");
        fs.mkdirSync(state);
        const outside = await checkBackend("dvnt", REPO_ROOT, { ...process.env, PULUMI_BACKEND_URL: `file://${state}` });
        assert.equal(outside.status, "ok", outside.detail);
        assert.match(outside.detail, /stack dvnt does not exist yet \(the first run creates it\)/);
    });

    it("the store's public URL: a probe comes back byte for byte from a server of this store; another directory, a 404 or no server fails naming the URL and the two ways to serve it", async () => {
        const store = path.join(dir, "store");
        const other = path.join(dir, "other");
        fs.mkdirSync(store);
        fs.mkdirSync(path.join(other, ".image-factory-probe"), { recursive: true });
        const serve = async (root: string) => {
            const s = createArtifactServer({ root });
            await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
            return { s, url: `http://127.0.0.1:${(s.address() as { port: number }).port}` };
        };
        const config = (url: string) => parseConfig({ lab: "dvnt", bootstrapUser: { sshAuthorizedKeys: [KEY] }, artifactStore: { root: store, publicBaseUrl: url } });
        const good = await serve(store);
        const wrong = await serve(other);
        const closed: http.Server[] = [];
        try {
            const ok = await checkStoreUrl(config(good.url), (p) => p);
            assert.equal(ok.status, "ok", ok.detail);
            assert.deepEqual(fs.readdirSync(store), [], "the probe is removed");
            // A server of another directory that happens to hold a file of that name with other bytes is caught too.
            const w = await checkStoreUrl(config(wrong.url), (p) => p);
            assert.equal(w.status, "fail");
            assert.match(w.detail, new RegExp(`${wrong.url}/\\.image-factory-probe/lab-check-[0-9a-f]+\\.txt answered HTTP 404`));
            for (const f of [w.detail]) {
                assert.match(f, /the builder-node image serves \/srv\/artifacts on :8089/);
                assert.match(f, /make serve STACK=<stack>/);
            }
            const fake = (async () => new Response("something else\n", { status: 200 })) as unknown as typeof fetch;
            assert.match((await checkStoreUrl(config(good.url), (p) => p, fake)).detail, /serves another directory than the store/);
            const gone = await checkStoreUrl(config("http://127.0.0.1:9"), (p) => p);
            assert.equal(gone.status, "fail");
            assert.match(gone.detail, /http:\/\/127\.0\.0\.1:9\/\.image-factory-probe\/.* cannot be fetched/);
        } finally {
            for (const s of [good.s, wrong.s, ...closed]) await new Promise((r) => s.close(r));
        }
    });
});
