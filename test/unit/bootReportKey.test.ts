// providers/imageValidation.ts bootReportKey: a kept boot report is reused only for what it proved.
import { strict as assert } from "node:assert";
import { bootReportKey } from "../../providers/imageValidation";
import { smokeScript } from "../../lib/validation/bootCheck";

describe("boot report key", () => {
    const sha = "a".repeat(64);
    const boot = { hostname: "boot-debian-12-minimal", smokeSha256: undefined, seed: undefined };

    it("is the same for the same bytes, user, hostname and checks, and uses today's common checks by default", () => {
        const k = bootReportKey(sha, "ansible", boot);
        assert.match(k, /^[0-9a-f]{64}$/);
        assert.equal(bootReportKey(sha, "ansible", boot), k);
        assert.equal(bootReportKey(sha, "ansible", boot, smokeScript({ user: "ansible", hostname: boot.hostname, minRootBytes: 0 })), k);
    });

    it("changes when the common checks change, so a report of the old checks is not reused", () => {
        const today = smokeScript({ user: "ansible", hostname: boot.hostname, minRootBytes: 0 });
        const older = today.replace(/ && grep "\^nameserver " \/etc\/resolv\.conf/, "");
        assert.notEqual(older, today, "the network check no longer asks for a nameserver: update this test");
        assert.notEqual(bootReportKey(sha, "ansible", boot, older), bootReportKey(sha, "ansible", boot));
    });

    it("changes with the bytes, the user, the hostname, the recipe's smoke script and the seed", () => {
        const k = bootReportKey(sha, "ansible", boot);
        const others = [
            bootReportKey("b".repeat(64), "ansible", boot),
            bootReportKey(sha, "debian", boot),
            bootReportKey(sha, "ansible", { ...boot, hostname: "boot-other" }),
            bootReportKey(sha, "ansible", { ...boot, smokeSha256: "c".repeat(64) }),
            bootReportKey(sha, "ansible", { ...boot, seed: { baseImage: "/x.qcow2", baseSha256: "d".repeat(64), authorizedKeys: ["ssh-ed25519 AAAA"] } }),
        ];
        assert.equal(new Set([k, ...others]).size, 6);
    });
});
