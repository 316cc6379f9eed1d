import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { createArtifactServer, parseRange } from "../../lib/publish/artifactServer";
import { sha256sumLine } from "../../lib/sha256";

function request(port: number, p: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, path: p, method: opts.method ?? "GET", headers: opts.headers }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        });
        req.on("error", reject);
        req.end();
    });
}

describe("lib/artifactServer", () => {
    let root: string;
    let server: http.Server;
    let port: number;
    const body = Buffer.from("0123456789abcdefghij");
    const sha = "0b84ac8b1e1c9d0a7c3c37ed3b5f1e2f3a6f64f5e4d48b31b0b7b7dfd0d8d2b1";

    before(async () => {
        root = fs.mkdtempSync(path.join(os.tmpdir(), "if-srv-"));
        fs.mkdirSync(path.join(root, "images", "a", "v1"), { recursive: true });
        fs.writeFileSync(path.join(root, "images", "a", "v1", "a.qcow2"), body);
        fs.writeFileSync(path.join(root, "images", "a", "v1", "a.qcow2.sha256"), sha256sumLine(sha, "a.qcow2"));
        fs.writeFileSync(path.join(root, "images", "a", "v1", "b.qcow2.partial"), "half");
        fs.writeFileSync(path.join(os.tmpdir(), "if-outside.txt"), "secret");
        fs.symlinkSync(path.join(os.tmpdir(), "if-outside.txt"), path.join(root, "escape"));
        server = createArtifactServer({ root });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        port = (server.address() as { port: number }).port;
    });
    after(async () => {
        await new Promise<void>((r) => server.close(() => r()));
        fs.rmSync(root, { recursive: true, force: true });
    });

    it("serves whole files with exact length, byte ranges and the recorded sha256 as ETag", async () => {
        const full = await request(port, "/images/a/v1/a.qcow2");
        assert.equal(full.status, 200);
        assert.equal(full.headers["content-length"], String(body.length));
        assert.equal(full.headers["accept-ranges"], "bytes");
        assert.equal(full.headers.etag, `"sha256:${sha}"`);
        assert.deepEqual(full.body, body);
        const mid = await request(port, "/images/a/v1/a.qcow2", { headers: { Range: "bytes=5-9" } });
        assert.equal(mid.status, 206);
        assert.equal(mid.headers["content-range"], `bytes 5-9/${body.length}`);
        assert.equal(mid.headers["content-length"], "5");
        assert.equal(mid.body.toString(), "56789");
        const tail = await request(port, "/images/a/v1/a.qcow2", { headers: { Range: "bytes=-3" } });
        assert.equal(tail.body.toString(), "hij");
        const open = await request(port, "/images/a/v1/a.qcow2", { headers: { Range: "bytes=18-" } });
        assert.equal(open.body.toString(), "ij");
    });

    it("answers 416 for ranges past the end, and ignores a stale If-Range", async () => {
        const r = await request(port, "/images/a/v1/a.qcow2", { headers: { Range: "bytes=100-" } });
        assert.equal(r.status, 416);
        assert.equal(r.headers["content-range"], `bytes */${body.length}`);
        const stale = await request(port, "/images/a/v1/a.qcow2", { headers: { Range: "bytes=0-1", "If-Range": '"sha256:other"' } });
        assert.equal(stale.status, 200);
        assert.equal(stale.body.length, body.length);
    });

    it("HEAD gives headers only; 304 on a matching If-None-Match", async () => {
        const head = await request(port, "/images/a/v1/a.qcow2", { method: "HEAD" });
        assert.equal(head.status, 200);
        assert.equal(head.headers["content-length"], String(body.length));
        assert.equal(head.body.length, 0);
        const nm = await request(port, "/images/a/v1/a.qcow2", { headers: { "If-None-Match": `"sha256:${sha}"` } });
        assert.equal(nm.status, 304);
    });

    it("never serves .partial files, paths outside the root, or methods other than GET/HEAD", async () => {
        assert.equal((await request(port, "/images/a/v1/b.qcow2.partial")).status, 404);
        assert.equal((await request(port, "/images/a/v1/")).body.toString(), "a.qcow2\na.qcow2.sha256\n");
        assert.equal((await request(port, "/escape")).status, 404);
        assert.equal((await request(port, "/images/../../etc/passwd")).status, 404);
        const encoded = await request(port, "/images/%2e%2e/%2e%2e/etc/passwd");
        assert.ok([400, 404].includes(encoded.status), String(encoded.status));
        assert.doesNotMatch(encoded.body.toString(), /root:/);
        const put = await request(port, "/images/a/v1/a.qcow2", { method: "PUT" });
        assert.equal(put.status, 405);
        assert.equal(put.headers.allow, "GET, HEAD");
        assert.equal((await request(port, "/healthz")).body.toString(), "ok\n");
    });

    it("parses Range headers per RFC 9110", () => {
        assert.deepEqual(parseRange("bytes=0-0", 10), { start: 0, end: 0 });
        assert.deepEqual(parseRange("bytes=5-100", 10), { start: 5, end: 9 });
        assert.equal(parseRange("bytes=10-", 10), "unsatisfiable");
        assert.equal(parseRange("bytes=-0", 10), "unsatisfiable");
        assert.equal(parseRange("bytes=0-1,3-4", 10), undefined);
        assert.equal(parseRange("items=0-1", 10), undefined);
        assert.equal(parseRange("bytes=5-2", 10), undefined);
        assert.equal(parseRange(undefined, 10), undefined);
    });
});
