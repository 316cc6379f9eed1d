import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { ConfigError, isHostPort, parseConfig, readNamespace, resolveAuthorizedKeys, sshFingerprint } from "../../lib/config";
import { REPO_ROOT } from "../helpers/setup";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@example";

function problems(raw: Record<string, unknown>): string[] {
    try {
        parseConfig(raw);
    } catch (err) {
        assert.ok(err instanceof ConfigError, String(err));
        return err.problems;
    }
    assert.fail("expected a ConfigError");
}

describe("lib/config", () => {
    it("applies defaults to a minimal local config", () => {
        const c = parseConfig({ lab: "local", bootstrapUser: { sshAuthorizedKeys: [KEY] } });
        assert.equal(c.maxPass, 3);
        assert.equal(c.vendor, "deevnet");
        assert.deepEqual(c.artifactStore, { root: ".artifacts", host: "127.0.0.1", port: 8089 });
        assert.equal(c.bootstrapUser.name, "ansible");
        assert.equal(c.oci, undefined);
    });

    it("names the key, the bad value and what is allowed", () => {
        assert.deepEqual(problems({ lab: "local", maxPass: 7 }), ["factory:maxPass = 7: must be 1, 2 or 3"]);
        assert.deepEqual(problems({ lab: "prod" }), ['factory:lab = "prod": must be one of "local", "dvnt", "dvntm"']);
        const p = problems({ lab: "local", oci: { registry: "https://registry.example.com/x", repository: "a/b" } });
        assert.equal(p.length, 1);
        assert.match(p[0], /^factory:oci\.registry = "https:\/\/registry\.example\.com\/x": must be a registry host/);
    });

    it("reports nested array items and unknown keys", () => {
        const p = problems({ lab: "local", bootstrapUser: { sshAuthorizedKeys: ["not a key"] }, maxpass: 2 });
        assert.ok(p.some((x) => /^factory:bootstrapUser\.sshAuthorizedKeys\[0\] = "not a key": must be one OpenSSH public key line/.test(x)), p.join("\n"));
        assert.ok(p.some((x) => /unknown key\(s\) maxpass/.test(x)), p.join("\n"));
    });

    it("never validates secrets as plain values", () => {
        const c = parseConfig({ lab: "local", githubToken: "ghp_x", bootstrapUser: { sshAuthorizedKeys: [KEY] } });
        assert.equal((c as Record<string, unknown>).githubToken, undefined);
    });

    it("decodes the stack's raw config map of one namespace", () => {
        const raw = readNamespace({ "factory:maxPass": "2", "factory:lab": "dvnt", "factory:oci": '{"registry":"registry.example.com"}', "aws:region": "x", "factory:version": "v2026.01.02" });
        assert.deepEqual(raw, { maxPass: 2, lab: "dvnt", oci: { registry: "registry.example.com" }, version: "v2026.01.02" });
    });

    it("accepts registry hosts and rejects URLs and garbage", () => {
        for (const ok of ["registry.example.com", "127.0.0.1:5000", "registry.example.com:443", "localhost:5000"]) assert.ok(isHostPort(ok), ok);
        for (const bad of ["", "not a url!", "https://registry.example.com", "registry.example.com/owner", "host:port", "user@host"]) assert.ok(!isHostPort(bad), bad);
    });

    it("takes the OCI registry's host from the stack, else OCI_REGISTRY, else GitHub's container registry", () => {
        const raw = () => ({ lab: "dvnt", bootstrapUser: { sshAuthorizedKeys: [KEY] }, oci: { repository: "deevnet/images" } });
        assert.equal(parseConfig(raw(), { OCI_REGISTRY: "oci.example.test" }).oci?.registry, "oci.example.test");
        assert.equal(parseConfig({ ...raw(), oci: { registry: "pinned.example.test", repository: "a/b" } }, { OCI_REGISTRY: "oci.example.test" }).oci?.registry, "pinned.example.test");
        assert.equal(parseConfig(raw(), {}).oci?.registry, "ghcr.io");
        assert.equal(parseConfig(raw(), { OCI_REGISTRY: "" }).oci?.registry, "ghcr.io", "an unset repository variable arrives as an empty string");
        assert.equal(parseConfig({ ...raw(), oci: { enabled: false, repository: "a/b" } }, {}).oci, undefined);
    });

    it("factory:buildCache: off when absent; pulls (not pushes) by default, from factory:oci's registry; refuses pulling or pushing without a trusted key", () => {
        const base = { lab: "local", bootstrapUser: { sshAuthorizedKeys: [KEY] } };
        assert.equal(parseConfig(base, {}).buildCache, undefined);
        const c = parseConfig({ ...base, oci: { registry: "reg.example.test:5000", repository: "a/b" }, buildCache: { repository: "lab", trustedKeys: ["keys/lab.asc"] } }, {});
        assert.deepEqual(c.buildCache, { registry: "reg.example.test:5000", repository: "lab", pull: true, push: false, trustedKeys: ["keys/lab.asc"], plainHttp: false });
        assert.equal(parseConfig({ ...base, buildCache: { repository: "lab", trustedKeys: ["k.asc"] } }, { OCI_REGISTRY: "oci.example.test" }).buildCache?.registry, "oci.example.test");
        assert.equal(parseConfig({ ...base, buildCache: { repository: "lab", trustedKeys: ["k.asc"] } }, {}).buildCache?.registry, "ghcr.io");
        assert.deepEqual(problems({ ...base, buildCache: { repository: "lab", push: true } }), [
            "factory:buildCache.trustedKeys = <missing>: needs at least one trusted key: trustedKeys lists armored OpenPGP public key files (gpg --armor --export <the lab's evidence key>), relative to the project"]);
        // Both off is the cache off, and needs no key.
        assert.equal(parseConfig({ ...base, buildCache: { repository: "lab", pull: false, push: false } }, {}).buildCache?.pull, false);
        assert.deepEqual(problems({ ...base, buildCache: { repository: "Lab/X", trustedKeys: ["k.asc"] } }).map((p) => p.split(":")[1]), ["buildCache.repository = \"Lab/X\""]);
    });

    it("refuses the shipped placeholder bootstrap key in a lab stack by fingerprint, naming the key and the fix; local may use any key", () => {
        const lab = parse(fs.readFileSync(path.join(REPO_ROOT, "Pulumi.dvnt.yaml"), "utf8")) as { config: Record<string, unknown> };
        const shipped = (lab.config["factory:bootstrapUser"] as { sshAuthorizedKeys: string[] }).sshAuthorizedKeys[0];
        assert.equal(sshFingerprint(shipped), "SHA256:kEN4mdJycd0rO6mph9ZtY7UXfmMjzajSgsiRsVK+7A4", "the fingerprint ssh-keygen -l prints");
        for (const line of [shipped, shipped.replace(/ deevnet-bootstrap.*$/, " renamed")]) {
            const p = problems({ lab: "dvnt", bootstrapUser: { sshAuthorizedKeys: [KEY, line] } });
            assert.equal(p.length, 1);
            assert.match(p[0], /^factory:bootstrapUser\.sshAuthorizedKeys\[1\] = ".*": is the placeholder key shipped in Pulumi\.dvnt\.yaml and Pulumi\.dvntm\.yaml \(SHA256:kEN4mdJ.*\); nobody in the lab holds its private half: put the lab's bootstrap public key there/);
        }
        assert.equal(parseConfig({ lab: "local", bootstrapUser: { sshAuthorizedKeys: [shipped] } }).bootstrapUser.sshAuthorizedKeys[0], shipped);
        assert.equal(parseConfig({ lab: "dvntm", bootstrapUser: { sshAuthorizedKeys: [KEY] } }).lab, "dvntm");
    });

    it("refuses the placeholder from a key file too, in a lab stack", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-keys-"));
        try {
            fs.writeFileSync(path.join(dir, "k.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMjjA0f48zDtYA4yRMh+7IpcwV32F6VmHb3ZlP0fzwjm copied\n");
            const user = { name: "ansible", sshAuthorizedKeys: [], sshAuthorizedKeyFiles: ["k.pub"] };
            assert.throws(() => resolveAuthorizedKeys(user, dir, "dvnt"), /factory:bootstrapUser\.sshAuthorizedKeyFiles\[0\] \(k\.pub\) = .*is the placeholder key/);
            assert.equal(resolveAuthorizedKeys(user, dir, "local").length, 1);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
