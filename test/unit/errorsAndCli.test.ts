// The typed failures callers decide on (lib/errors.ts), the strict option parsing of the bin/ scripts (lib/cli.ts)
// and the one diff shape of the dynamic providers (providers/dynamic.ts keyedDiff).
import { strict as assert } from "node:assert";
import * as http from "node:http";
import { parseCli } from "../../lib/cli";
import { ConfigError } from "../../lib/config";
import { HttpStatusError, isUserError, refusedCredentials, statusOf, UserError } from "../../lib/errors";
import { toolMissingError } from "../../lib/exec";
import { explainGithubError } from "../../lib/publish/github";
import { explainOrasError } from "../../lib/publish/oci";
import { loadRecipe } from "../../lib/recipe";
import { keyedDiff } from "../../providers/dynamic";
import { provider as ociPush } from "../../providers/ociPush";

describe("lib/errors: failures classified by type and HTTP status, not by message text", () => {
    it("config, recipe and missing-tool failures are UserErrors (the program prints them without a trace)", () => {
        assert.ok(isUserError(new ConfigError(["factory:lab: required"])));
        assert.ok(isUserError(toolMissingError("qemu-img", "qemu-utils")));
        assert.throws(() => loadRecipe("no-such-image"), (e: Error) => isUserError(e) && /unknown image "no-such-image"/.test(e.message));
        assert.ok(!isUserError(new Error("a bug")));
    });

    it("oras output is read for a status once; callers see 401/403/404 as statusOf", () => {
        const t = { registry: "127.0.0.1:5000", repository: "lab/images", plainHttp: true, password: "s3cret" };
        const unauthorized = explainOrasError(new Error("Error: failed to fetch: response status code 401: unauthorized: s3cret"), t);
        assert.equal(statusOf(unauthorized), 401);
        assert.ok(refusedCredentials(unauthorized));
        assert.doesNotMatch(unauthorized.message, /s3cret/);
        assert.equal(statusOf(explainOrasError(new Error("response status code 403: denied: requested access to the resource is denied"), t)), 403);
        assert.equal(statusOf(explainOrasError(new Error("Error: 127.0.0.1:5000/lab/images:v1: not found"), t)), 404);
        const down = explainOrasError(new Error("dial tcp 127.0.0.1:5000: connect: connection refused"), t);
        assert.equal(statusOf(down), undefined);
        assert.ok(!refusedCredentials(down));
    });

    it("a GitHub failure keeps Octokit's status on the explained error", () => {
        const e = explainGithubError(Object.assign(new Error("Bad credentials"), { status: 401 }), "uploading x", { owner: "o", repo: "r" });
        assert.ok(e instanceof HttpStatusError);
        assert.equal(e.status, 401);
        assert.match(e.message, /set factory:githubToken/);
        assert.equal(statusOf(new UserError("x")), undefined);
    });

    it("a refresh of an OCI artifact keeps its state when the registry refuses anonymous reads (401), and fails when it is down", async () => {
        const server = http.createServer((_req, res) => {
            res.writeHead(401, { "www-authenticate": 'Basic realm="registry"', "content-type": "application/json" });
            res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }));
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        const read = ociPush.read as NonNullable<typeof ociPush.read>;
        try {
            const props = { registry: `127.0.0.1:${(server.address() as { port: number }).port}`, repository: "lab/images", tags: ["v1"], plainHttp: true, mediaType: "m" };
            assert.deepEqual(await read("id", props as never), { id: "id", props });
            await assert.rejects(() => read("id", { ...props, registry: "127.0.0.1:9" } as never), (e: Error) => statusOf(e) === undefined && /unreachable/.test(e.message));
        } finally {
            server.close();
        }
    });
});

describe("lib/cli: strict options for the bin/ scripts", () => {
    const spec = { values: ["image", "version"] as const, flags: ["boot"] as const, usage: "x --image <name> [--boot]" };

    it("reads values (both spellings) and flags", () => {
        const cli = parseCli({ ...spec, values: [...spec.values], flags: [...spec.flags] }, ["--image", "a", "--version=v1", "--boot"]);
        assert.equal(cli.value("image"), "a");
        assert.equal(cli.value("version"), "v1");
        assert.equal(cli.flag("boot"), true);
        assert.equal(parseCli({ ...spec, values: [...spec.values], flags: [...spec.flags] }, []).flag("boot"), false);
    });

    it("a mistyped option, a value on a flag or a stray argument is a UserError with the usage", () => {
        const s = { ...spec, values: [...spec.values], flags: [...spec.flags] };
        for (const argv of [["--imgae", "a"], ["--boot=yes"], ["stray"]]) {
            assert.throws(() => parseCli(s, argv), (e: Error) => isUserError(e) && /usage: x --image <name> \[--boot\]/.test(e.message), argv.join(" "));
        }
        assert.deepEqual(parseCli({ ...s, positionals: true }, ["oci://r/x:1"]).positionals, ["oci://r/x:1"]);
    });
});

describe("providers/dynamic keyedDiff: one diff shape for every dynamic resource", () => {
    const olds = { a: "1", b: [1, 2], c: true, d: undefined as string | undefined };
    it("replace keys replace, update keys update, absent equals null, arrays compare by value", () => {
        assert.deepEqual(keyedDiff(olds, { ...olds, b: [1, 2] }, { replace: ["a"], update: ["b", "c"] }), { changes: false, replaces: [], deleteBeforeReplace: false });
        assert.deepEqual(keyedDiff(olds, { ...olds, a: "2" }, { replace: ["a"], update: ["b"] }).replaces, ["a"]);
        const upd = keyedDiff(olds, { ...olds, b: [2, 1] }, { replace: ["a"], update: ["b"] });
        assert.deepEqual([upd.changes, upd.replaces], [true, []]);
        assert.equal(keyedDiff(olds, { ...olds, d: null as unknown as undefined }, { replace: ["d"] }).changes, false);
    });
    it("what keys cannot see is added by the caller", () => {
        assert.deepEqual(keyedDiff(olds, olds, { replace: ["a"] }, { replaces: ["path"] }).replaces, ["path"]);
        assert.equal(keyedDiff(olds, olds, { update: ["a"] }, { changes: true }).changes, true);
    });
});
