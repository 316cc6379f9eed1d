import { strict as assert } from "node:assert";
import { assertVersion, compareVersions, dateVersion, nextVersion } from "../../lib/version";

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
    it("orders versions by date, then suffix", () => {
        const sorted = ["v2026.01.10", "v2026.01.02.1", "v2026.01.02", "v2025.12.31"].sort(compareVersions);
        assert.deepEqual(sorted, ["v2025.12.31", "v2026.01.02", "v2026.01.02.1", "v2026.01.10"]);
    });
});
