import { strict as assert } from "node:assert";
import { assertRunbookVersion, assertVersion, compareVersions, dateVersion, nextVersion } from "../../lib/version";
import { runbookImageName } from "../../lib/recipe";

describe("lib/version", () => {
    const day = new Date(Date.UTC(2026, 10, 5, 23, 59));
    it("derives vYYYY.MM.DD from the UTC build date", () => {
        assert.equal(dateVersion(day), "v2026.11.05");
    });
    it("adds .N for further builds on the same day", () => {
        assert.equal(nextVersion(day, []), "v2026.11.05");
        assert.equal(nextVersion(day, ["v2026.11.05"]), "v2026.11.05.1");
        assert.equal(nextVersion(day, ["v2026.11.05", "v2026.11.05.1", "v2026.11.04"]), "v2026.11.05.2");
    });
    it("validates pinned versions, calendar included", () => {
        assert.equal(assertVersion("v2026.02.28.3"), "v2026.02.28.3");
        assert.throws(() => assertVersion("2026.02.28"), /must look like vYYYY\.MM\.DD/);
        assert.throws(() => assertVersion("v2026.02.30"), /not a calendar date/);
        assert.throws(() => assertVersion("v2026.13.01"), /not a calendar date/);
    });
    it("a local runbook build (seed 002) may be v1, v2, …; what a lab stack publishes may not", () => {
        assert.equal(assertRunbookVersion("v1"), "v1");
        assert.equal(assertRunbookVersion("v12"), "v12");
        assert.equal(assertRunbookVersion("v2026.02.28"), "v2026.02.28");
        assert.throws(() => assertRunbookVersion("v0"), /must look like vYYYY\.MM\.DD or vYYYY\.MM\.DD\.N, or v<N> \(v1, v2, …\) for a local runbook build/);
        assert.throws(() => assertRunbookVersion("1"), /or v<N>/);
        assert.throws(() => assertRunbookVersion("v2026.02.30"), /not a calendar date, or v<N>/);
        assert.throws(() => assertVersion("v1"), /must look like vYYYY\.MM\.DD/, "release tags stay date versions");
    });
    it("the runbook's IMAGE=debian-12 is debian-12-minimal; other names stay as they are", () => {
        assert.equal(runbookImageName("debian-12"), "debian-12-minimal");
        assert.equal(runbookImageName("sdr-pi"), "sdr-pi");
        assert.equal(runbookImageName("ubuntu-24.04"), "ubuntu-24.04");
    });
    it("orders versions by date, then suffix", () => {
        const sorted = ["v2026.01.10", "v2026.01.02.1", "v2026.01.02", "v2025.12.31"].sort(compareVersions);
        assert.deepEqual(sorted, ["v2025.12.31", "v2026.01.02", "v2026.01.02.1", "v2026.01.10"]);
    });
});
