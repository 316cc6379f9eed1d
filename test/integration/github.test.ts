// lib/github (Octokit) against the loopback GitHub fake: drafts, streaming uploads, digest-based skips,
// replacement, retries on 5xx, and the error messages for 401/403/404/422.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { ensureRelease, githubClient, listAssets, publishRelease, uploadAsset, findRelease, MAX_ASSET_BYTES } from "../../lib/publish/github";
import { download } from "../../lib/baseImages/download";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";
import { REPO_ROOT } from "../helpers/setup";
import execa from "execa";

describe("lib/github against a loopback GitHub", function () {
    this.timeout(60_000);
    let gh: FakeGithub;
    let dir: string;
    let file: string;
    let sha: string;
    const repo = { owner: "deevnet", repo: "images" };

    before(async () => {
        gh = await startFakeGithub({ token: "ghp_test", repos: [["deevnet", "images"]] });
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-gh-"));
        file = path.join(dir, "img-v2026.01.01.qcow2");
        fs.writeFileSync(file, crypto.randomBytes(2 * 1024 * 1024 + 3));
        sha = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    });
    after(async () => {
        await gh.close();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    const client = (token = "ghp_test") => githubClient({ token, baseUrl: gh.url, retryDelayMs: 5 });

    it("creates the release as a draft, finds drafts again by tag, uploads streaming, then publishes", async () => {
        const c = client();
        const { release, created } = await ensureRelease(c, repo, "v2026.01.01", { name: "v2026.01.01", body: "b", targetCommitish: "abc" });
        assert.equal(created, true);
        assert.equal(release.draft, true);
        const again = await ensureRelease(c, repo, "v2026.01.01", { name: "x", body: "y" });
        assert.deepEqual([again.created, again.release.id], [false, release.id]);
        const asset = await uploadAsset(c, repo, release, file, "img-v2026.01.01.qcow2", sha, "application/octet-stream");
        assert.equal(asset.digest, `sha256:${sha}`);
        assert.equal(asset.size, fs.statSync(file).size);
        assert.deepEqual(gh.assetBytes("deevnet", "images", "v2026.01.01", "img-v2026.01.01.qcow2"), fs.readFileSync(file));
        assert.equal((await findRelease(c, repo, "v2026.01.01"))?.draft, true);
        const pub = await publishRelease(c, repo, release);
        assert.equal(pub.draft, false);
        assert.equal(gh.releases("deevnet", "images")[0].draft, false);
    });

    it("a published asset's browser download survives a 503 of the download route (a fault injected there): the consumer's download retries and verifies", async () => {
        const release = (await findRelease(client(), repo, "v2026.01.01"))!;
        const url = (await listAssets(client(), repo, release.id)).find((a) => a.name === "img-v2026.01.01.qcow2")!.browser_download_url;
        gh.inject({ method: "GET", path: /^\/deevnet\/images\/releases\/download\//, status: 503, times: 1 });
        const lines: string[] = [];
        const r = await download({ url, dest: path.join(dir, "downloaded.qcow2"), expectedSha256: sha, retries: 2, retryDelayMs: 5, log: (l) => lines.push(l) });
        assert.equal(r.sha256, sha);
        assert.equal(r.attempts, 2);
        assert.ok(lines.some((l) => /HTTP 503; retrying/.test(l)), lines.join("\n"));
        const tries = gh.requests.filter((x) => x.path.startsWith("/deevnet/images/releases/download/"));
        assert.deepEqual(tries.slice(-2).map((x) => x.status), [503, 302]);
    });

    it("skips an asset GitHub already holds with the same digest: no upload request", async () => {
        const c = client();
        const release = (await findRelease(c, repo, "v2026.01.01"))!;
        const uploadsBefore = gh.requests.filter((r) => r.path.startsWith("/uploads/")).length;
        await uploadAsset(c, repo, release, file, "img-v2026.01.01.qcow2", sha, "application/octet-stream");
        assert.equal(gh.requests.filter((r) => r.path.startsWith("/uploads/")).length, uploadsBefore);
    });

    it("replaces an asset whose bytes changed (GitHub would answer 422 for the duplicate name)", async () => {
        const c = client();
        const release = (await findRelease(c, repo, "v2026.01.01"))!;
        const changed = path.join(dir, "changed.qcow2");
        fs.writeFileSync(changed, "new bytes");
        const newSha = crypto.createHash("sha256").update("new bytes").digest("hex");
        const a = await uploadAsset(c, repo, release, changed, "img-v2026.01.01.qcow2", newSha, "application/octet-stream");
        assert.equal(a.digest, `sha256:${newSha}`);
        const assets = await listAssets(c, repo, release.id);
        assert.deepEqual(assets.map((x) => [x.name, x.digest]), [["img-v2026.01.01.qcow2", `sha256:${newSha}`]]);
        assert.ok(gh.requests.some((r) => r.method === "DELETE" && /\/releases\/assets\/\d+$/.test(r.path)));
    });

    it("retries a 500 on the first upload try, with a fresh stream", async () => {
        const c = client();
        const { release } = await ensureRelease(c, repo, "v2026.01.02", { name: "v2026.01.02", body: "" });
        gh.inject({ method: "POST", path: /^\/uploads\//, status: 500, times: 1 });
        const a = await uploadAsset(c, repo, release, file, "retry.qcow2", sha, "application/octet-stream");
        assert.equal(a.digest, `sha256:${sha}`);
        const tries = gh.requests.filter((r) => r.path.endsWith(`/releases/${release.id}/assets`) && r.method === "POST");
        assert.deepEqual(tries.map((r) => r.status), [500, 201]);
    });

    it("explains 401, 403 (scope and rate limit), 404 and 422 with what to fix", async () => {
        await assert.rejects(findRelease(client("wrong"), repo, "v1"), /GitHub rejected the token \(401 Bad credentials\): set factory:githubToken/);
        await assert.rejects(findRelease(client(), { owner: "deevnet", repo: "missing" }, "v1"), /deevnet\/missing not found \(404\)/);
        gh.inject({ method: "POST", path: /^\/repos\/deevnet\/images\/releases$/, status: 403, times: 1 });
        await assert.rejects(ensureRelease(client(), repo, "v2026.02.01", { name: "x", body: "" }), /forbidden \(403 injected\): the token needs contents: write on deevnet\/images/);
    });

    it("refuses an asset of 2 GiB (GitHub: \"each file included in a release must be under 2 GiB\") before sending a byte, naming OCI", async () => {
        const c = client();
        const { release } = await ensureRelease(c, repo, "v2026.01.03", { name: "v2026.01.03", body: "" });
        const big = path.join(dir, "big.qcow2");
        fs.closeSync(fs.openSync(big, "w"));
        fs.truncateSync(big, MAX_ASSET_BYTES + 1); // sparse: 2 GiB of nothing
        assert.equal(MAX_ASSET_BYTES + 1, 2 * 1024 ** 3);
        const before = gh.requests.length;
        await assert.rejects(uploadAsset(c, repo, release, big, "big.qcow2", "0".repeat(64), "application/octet-stream"),
            /big\.qcow2 is 2147483648 bytes; GitHub release assets must be smaller than 2 GiB: publish it through OCI \(factory:oci, with factory:release\.manifestSource: oci\)/);
        assert.deepEqual(gh.requests.slice(before), [], "nothing was sent");
    });

    // Resets are sent relative to the real clock, so nothing here depends on the date the tests run.
    const tagLookup = /^\/repos\/deevnet\/images\/releases\/tags\//;
    const primaryLimit = (resetInSeconds: number) => ({ "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + resetInSeconds) });
    const logged = () => {
        const lines: string[] = [];
        return { lines, client: (o: Partial<Parameters<typeof githubClient>[0]> = {}) => githubClient({ token: "ghp_test", baseUrl: gh.url, retryDelayMs: 1, log: (l) => lines.push(l), ...o }) };
    };

    it("waits out a primary rate limit that resets soon, logging when the wait ends, then succeeds", async () => {
        const { lines, client: c } = logged();
        const before = gh.requests.length;
        gh.inject({ method: "GET", path: tagLookup, status: 403, times: 1, headers: primaryLimit(1) });
        const t0 = Date.now();
        const found = await findRelease(c(), repo, "v2026.01.01");
        assert.equal(found?.tag_name, "v2026.01.01");
        assert.ok(Date.now() - t0 >= 900, "the client must wait until the reset, not retry at once");
        assert.deepEqual(gh.requests.slice(before).filter((r) => tagLookup.test(r.path)).map((r) => r.status), [403, 200]);
        assert.match(lines.join("\n"), /GitHub rate limit on GET \S+\/releases\/tags\/\S+; waiting [12]s until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(wait 1 of at most 3\)/);
    });

    it("fails at once on a primary rate limit that resets far away, naming the reset time in UTC and the fix", async () => {
        const { lines, client: c } = logged();
        const reset = Math.floor(Date.now() / 1000) + 3 * 3600;
        gh.inject({ method: "GET", path: tagLookup, status: 403, times: 1, headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) } });
        const t0 = Date.now();
        const err = await findRelease(c(), repo, "v9").then(() => undefined, (e: Error) => e);
        assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms: a far reset must not be waited for`);
        assert.ok(err, "a far rate limit must fail");
        assert.equal(err.message, `looking up release v9: GitHub rate limit exhausted (403); it resets at ${new Date(reset * 1000).toISOString()} (in 3 h): ` +
            "wait until then and run `pulumi up` again, or use another token with its own quota (factory:githubToken or GITHUB_TOKEN)");
        assert.match(lines.join("\n"), /longer than the 900s this client waits; failing now/);
    });

    it("honours a secondary rate limit's Retry-After when short, fails fast when long, and gives up after the retry bound", async () => {
        const secondary = { message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again." };
        const { lines, client: c } = logged();
        gh.inject({ method: "GET", path: tagLookup, status: 429, times: 1, headers: { "retry-after": "1" }, ...secondary });
        assert.equal((await findRelease(c(), repo, "v2026.01.01"))?.tag_name, "v2026.01.01");
        assert.match(lines.join("\n"), /GitHub secondary rate limit on GET \S+; waiting 1s until /);

        gh.inject({ method: "GET", path: tagLookup, status: 403, times: 1, headers: { "retry-after": "3600" }, ...secondary });
        await assert.rejects(findRelease(c(), repo, "v2026.01.01"), /GitHub secondary rate limit \(403\); retry after \d{4}-\d\d-\d\dT[\d:.]+Z \(in 60 min\): wait until then/);

        // Bounded in count: with one wait allowed, a limit that persists fails after that one wait.
        gh.inject({ method: "GET", path: tagLookup, status: 429, times: 2, headers: { "retry-after": "1" }, ...secondary });
        const before = gh.requests.length;
        await assert.rejects(findRelease(c({ maxRateLimitRetries: 1 }), repo, "v2026.01.01"), /secondary rate limit \(429\)/);
        assert.deepEqual(gh.requests.slice(before).map((r) => r.status), [429, 429]);
        assert.match(lines.join("\n"), /again after 1 waits; giving up/);
    });

    it("the fake is as loose as GitHub: two drafts may share a tag, a second published release may not", async () => {
        const c = client();
        const make = (draft: boolean) => c.rest.repos.createRelease({ ...repo, tag_name: "v2026.03.03", draft }).then((r) => r.status, (e: { status: number }) => e.status);
        assert.deepEqual([await make(true), await make(true), await make(false), await make(false)], [201, 201, 201, 422]);
        assert.equal(gh.releases("deevnet", "images").filter((r) => r.tag_name === "v2026.03.03").length, 3);
    });

    it("a cut upload leaves a `starter` asset that holds the name; the next upload clears it and succeeds", async () => {
        const c = client();
        const { release } = await ensureRelease(c, repo, "v2026.04.04", { name: "v2026.04.04", body: "" });
        const url = new URL(release.upload_url.replace(/\{.*\}$/, ""));
        url.searchParams.set("name", "cut.qcow2");
        await new Promise<void>((resolve) => {
            const req = http.request(url, { method: "POST", headers: { authorization: "token ghp_test", "content-type": "application/octet-stream", "content-length": 1_000_000 } });
            req.on("error", () => resolve());
            req.write(Buffer.alloc(1000));
            setTimeout(() => { req.destroy(); setTimeout(resolve, 200); }, 100);
        });
        const held = (await listAssets(c, repo, release.id)).find((a) => a.name === "cut.qcow2");
        assert.deepEqual([held?.state, held?.digest], ["starter", null]);
        const a = await uploadAsset(c, repo, release, file, "cut.qcow2", sha, "application/octet-stream");
        assert.deepEqual([a.state, a.digest], ["uploaded", `sha256:${sha}`]);
        assert.deepEqual((await listAssets(c, repo, release.id)).map((x) => [x.name, x.state]), [["cut.qcow2", "uploaded"]]);
    });

    it("an asset from before GitHub kept digests (digest: null) is replaced once, then skipped", async () => {
        const c = client();
        const release = (await findRelease(c, repo, "v2026.04.04"))!;
        gh.legacyDigests("deevnet", "images");
        const before = gh.requests.filter((r) => r.path.startsWith("/uploads/")).length;
        await uploadAsset(c, repo, release, file, "cut.qcow2", sha, "application/octet-stream");
        await uploadAsset(c, repo, release, file, "cut.qcow2", sha, "application/octet-stream");
        assert.equal(gh.requests.filter((r) => r.path.startsWith("/uploads/")).length, before + 1, "one upload: the legacy asset cannot be verified without its digest");
    });

    it("a digest GitHub computes that is not the local sha256 fails naming both, and the damaged asset is deleted", async () => {
        const c = client();
        const { release } = await ensureRelease(c, repo, "v2026.06.06", { name: "v2026.06.06", body: "" });
        gh.corruptNextUpload();
        await assert.rejects(uploadAsset(c, repo, release, file, "damaged.qcow2", sha, "application/octet-stream"),
            new RegExp(`GitHub computed sha256:[0-9a-f]{64} for damaged\\.qcow2, but its sha256 is ${sha}: the upload was corrupted; it was deleted, run again`));
        assert.deepEqual((await listAssets(c, repo, release.id)).map((a) => a.name), []);
        const a = await uploadAsset(c, repo, release, file, "damaged.qcow2", sha, "application/octet-stream");
        assert.equal(a.digest, `sha256:${sha}`, "the next try converges");
    });

    it("refuses files of 2 GiB or more before uploading anything", async () => {
        const c = client();
        const release = (await findRelease(c, repo, "v2026.01.02"))!;
        const big = path.join(dir, "big.qcow2");
        fs.closeSync(fs.openSync(big, "w"));
        fs.truncateSync(big, 2 ** 31); // sparse: no disk used
        await assert.rejects(uploadAsset(c, repo, release, big, "big.qcow2", sha, "application/octet-stream"), /smaller than 2 GiB: publish it through OCI/);
    });

    it("streams an asset from its file: the uploading process does not hold the file in memory", async () => {
        // Node's fetch read a streamed body ahead of the socket: +277 MiB of RSS for a 256 MiB asset (bench:upload).
        const big = path.join(dir, "big-v2026.01.01.qcow2");
        const block = crypto.randomBytes(1 << 20);
        const hash = crypto.createHash("sha256");
        const fd = fs.openSync(big, "w");
        for (let i = 0; i < 160; i++) {
            block.writeUInt32LE(i, 0);
            fs.writeSync(fd, block);
            hash.update(block);
        }
        fs.closeSync(fd);
        const script = `
            require("ts-node/register/transpile-only");
            const { githubClient, ensureRelease, uploadAsset } = require(${JSON.stringify(path.join(REPO_ROOT, "lib", "publish", "github.ts"))});
            const [file, sha, url] = process.argv.slice(1);
            const gh = githubClient({ token: process.env.UPLOAD_TOKEN, baseUrl: url });
            const repo = { owner: "deevnet", repo: "images" };
            ensureRelease(gh, repo, "v2026.01.09", { name: "v2026.01.09", body: "" }).then(async ({ release }) => {
                global.gc?.();
                const before = process.memoryUsage().rss;
                let peak = before;
                const t = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
                const a = await uploadAsset(gh, repo, release, file, "big.qcow2", sha, "application/octet-stream");
                clearInterval(t);
                process.stdout.write(JSON.stringify({ grewMiB: (peak - before) / 2 ** 20, digest: a.digest }));
            });`;
        const r = await execa(process.execPath, ["-e", script, big, hash.digest("hex"), gh.url], { cwd: REPO_ROOT, env: { UPLOAD_TOKEN: "ghp_test" } });
        const out = JSON.parse(r.stdout) as { grewMiB: number; digest: string };
        assert.match(out.digest, /^sha256:[0-9a-f]{64}$/);
        assert.equal(gh.assetBytes("deevnet", "images", "v2026.01.09", "big.qcow2")?.length, 160 << 20);
        assert.ok(out.grewMiB < 64, `the upload of a 160 MiB file grew the process by ${out.grewMiB.toFixed(0)} MiB`);
    });
});
