// lib/github's rate-limit policy with a pinned clock: short waits are taken and logged with the UTC time they
// end, long ones and too many are refused, and the error names the reset time, all independent of today's date.
import { strict as assert } from "node:assert";
import { DEFAULT_MAX_RATE_LIMIT_WAIT_S, explainGithubError, rateLimitDecision } from "../../lib/publish/github";

describe("GitHub rate-limit policy (pinned clock)", () => {
    const now = () => Date.parse("2031-05-06T07:08:09.000Z");
    const policy = (lines: string[]) => ({ maxWaitSeconds: DEFAULT_MAX_RATE_LIMIT_WAIT_S, maxRetries: 3, now, log: (l: string) => lines.push(l) });
    const repo = { owner: "deevnet", repo: "images" };

    it("waits up to 15 minutes, logging when the wait ends", () => {
        const lines: string[] = [];
        assert.equal(rateLimitDecision(policy(lines), "rate limit", 900, "GET /x", 0), true);
        assert.deepEqual(lines, ["GitHub rate limit on GET /x; waiting 900s until 2031-05-06T07:23:09.000Z (wait 1 of at most 3)"]);
    });

    it("refuses a wait of more than 15 minutes, naming when it lifts", () => {
        const lines: string[] = [];
        assert.equal(rateLimitDecision(policy(lines), "secondary rate limit", 901, "POST /y", 0), false);
        assert.deepEqual(lines, ["GitHub secondary rate limit on POST /y: it lifts at 2031-05-06T07:23:10.000Z, in 901s, longer than the 900s this client waits; failing now"]);
    });

    it("refuses a fourth wait", () => {
        const lines: string[] = [];
        assert.equal(rateLimitDecision(policy(lines), "rate limit", 1, "GET /x", 3), false);
        assert.deepEqual(lines, ["GitHub rate limit on GET /x again after 3 waits; giving up"]);
    });

    it("explains a 403 primary limit with its reset time in UTC and the fix", () => {
        const reset = Date.parse("2031-05-06T08:00:00Z") / 1000;
        const err = explainGithubError({ status: 403, response: { headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) } } }, "listing releases", repo, now);
        assert.equal(err.message, "listing releases: GitHub rate limit exhausted (403); it resets at 2031-05-06T08:00:00.000Z (in 52 min): " +
            "wait until then and run `pulumi up` again, or use another token with its own quota (factory:githubToken or GITHUB_TOKEN)");
        assert.equal((err as Error & { status?: number }).status, 403);
    });

    it("explains a 429 secondary limit with Retry-After, and a 403 without rate-limit headers as a scope problem", () => {
        const err = explainGithubError({ status: 429, response: { headers: { "retry-after": "7200" } } }, "uploading a", repo, now);
        assert.match(err.message, /^uploading a: GitHub secondary rate limit \(429\); retry after 2031-05-06T09:08:09\.000Z \(in 2 h\): wait until then/);
        const scope = explainGithubError({ status: 403, response: { data: { message: "Resource not accessible" }, headers: {} } }, "creating release v1", repo, now);
        assert.match(scope.message, /forbidden \(403 Resource not accessible\): the token needs contents: write on deevnet\/images/);
    });
});
