// The one backoff of every retry loop (OCI push, GitHub upload, base-image download) and the one sleep of every poll.
import { strict as assert } from "node:assert";
import { backoffMs, sleep } from "../../lib/backoff";

describe("lib/backoff", () => {
    it("doubles from the base after each failure", () => {
        assert.deepEqual([1, 2, 3, 4].map((a) => backoffMs(10, a)), [10, 20, 40, 80]);
        assert.equal(backoffMs(10, 0), 10);
    });
    it("sleep waits at least the time asked", async () => {
        const t0 = Date.now();
        await sleep(30);
        assert.ok(Date.now() - t0 >= 29, `${Date.now() - t0} ms`);
    });
});
