import { strict as assert } from "node:assert";
import { ConfigError, isHostPort, parseConfig, readNamespace } from "../../lib/config";

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

    it("takes the OCI registry's host from OCI_REGISTRY when the stack names only the repository, and says how to set it otherwise", () => {
        const raw = () => ({ lab: "dvnt", bootstrapUser: { sshAuthorizedKeys: [KEY] }, oci: { repository: "deevnet/images" } });
        assert.equal(parseConfig(raw(), { OCI_REGISTRY: "oci.example.test" }).oci?.registry, "oci.example.test");
        assert.equal(parseConfig({ ...raw(), oci: { registry: "pinned.example.test", repository: "a/b" } }, { OCI_REGISTRY: "oci.example.test" }).oci?.registry, "pinned.example.test");
        assert.throws(() => parseConfig(raw(), {}), (err: Error) => err instanceof ConfigError &&
            /factory:oci\.registry: not set: set it \(pulumi config set --path factory:oci\.registry <host\[:port\]>\) or export OCI_REGISTRY/.test(err.message));
        assert.equal(parseConfig({ ...raw(), oci: { enabled: false, repository: "a/b" } }, {}).oci, undefined);
    });
});
