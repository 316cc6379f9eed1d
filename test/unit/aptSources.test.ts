import { strict as assert } from "node:assert";
import { debianMirrors, parseAptSources, resolveDebianSource } from "../../lib/aptSources";

describe("lib/aptSources: the machine's configured Debian mirror", () => {
    const deb822 = parseAptSources(`Types: deb
# a comment
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main
`, true);
    const oneLine = parseAptSources("deb http://vendor.example/apt cloud-sdk-bookworm main\n# deb http://old.example/debian bookworm main\ndeb [arch=amd64] http://other.example/debian bookworm main contrib\n", false);

    it("reads deb822 and one-line entries, skipping deb-src and comments", () => {
        assert.equal(deb822.length, 2);
        assert.deepEqual(oneLine.map((e) => e.uris[0]), ["http://vendor.example/apt", "http://other.example/debian"]);
    });

    it("finds the suite's main archive and its security archive", () => {
        assert.deepEqual(debianMirrors(deb822, "bookworm"), { mirror: "http://mirror.example/debian", securityMirror: "http://mirror.example/debian-security" });
        assert.deepEqual(debianMirrors(oneLine, "bookworm"), { mirror: "http://other.example/debian", securityMirror: undefined });
    });

    it("prefers the stack's mirrors and fails clearly when neither is there", () => {
        const d = resolveDebianSource({ suite: "bookworm", mirror: "http://stack.example/debian", securityMirror: "http://stack.example/sec" }, true, () => []);
        assert.equal(d.mirror, "http://stack.example/debian");
        assert.throws(() => resolveDebianSource({ suite: "bookworm" }, true, () => oneLine), /factory:debian\.mirror \/ securityMirror: not set/);
        assert.equal(resolveDebianSource({ suite: "bookworm" }, false, () => []).mirror, "");
    });
});
