// The artifact server under faults: 50 parallel ranged readers while another version is stored beside the one they
// read, and clients that disconnect mid-download. Every reassembled download has the published sha256; a cut
// client leaves no open file behind and the server keeps answering.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { createArtifactServer } from "../../lib/publish/artifactServer";
import { provider as storedArtifact } from "../../providers/storedArtifact";

function get(port: number, p: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer; etag?: string }> {
    return new Promise((resolve, reject) => {
        http.get({ host: "127.0.0.1", port, path: p, headers, agent: false }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), etag: res.headers.etag }));
        }).on("error", reject);
    });
}

const openFds = () => fs.readdirSync("/proc/self/fd").length;

describe("artifact server under faults (parallel ranged readers, cut clients)", function () {
    this.timeout(120_000);
    let dir: string;
    let server: http.Server;
    let port: number;
    const SIZE = 4 * 1024 * 1024;
    let v1: { sha256: string; url: string };

    const place = async (version: string, bytes: Buffer) => {
        const src = path.join(dir, `src-${version}.qcow2`);
        fs.writeFileSync(src, bytes);
        for (const f of ["build.json", "pkg-manifest.txt", "build.log"]) fs.writeFileSync(path.join(dir, f), "{}");
        const sha256 = crypto.createHash("sha256").update(bytes).digest("hex");
        const r = await storedArtifact.create!({ storeRoot: path.join(dir, "store"), baseUrl: `http://127.0.0.1:${port}`, name: "img", version, source: src, sha256, size: bytes.length,
            buildJsonPath: path.join(dir, "build.json"), pkgManifestPath: path.join(dir, "pkg-manifest.txt"), logPath: path.join(dir, "build.log") });
        return { sha256, url: new URL(r.outs!.url).pathname };
    };

    before(async () => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-srvfault-"));
        fs.mkdirSync(path.join(dir, "store"));
        server = createArtifactServer({ root: path.join(dir, "store") });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        port = (server.address() as { port: number }).port;
        v1 = await place("v2026.01.01", crypto.randomBytes(SIZE));
    });
    after(async () => {
        await new Promise<void>((r) => server.close(() => r()));
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("50 readers fetching the published version in 4 ranges each, while a new version is stored: every download has the published sha256", async () => {
        const quarter = SIZE / 4;
        const reader = async () => {
            const parts = await Promise.all([0, 1, 2, 3].map((i) => get(port, v1.url, { range: `bytes=${i * quarter}-${(i + 1) * quarter - 1}` })));
            assert.ok(parts.every((p) => p.status === 206), parts.map((p) => p.status).join(","));
            return crypto.createHash("sha256").update(Buffer.concat(parts.map((p) => p.body))).digest("hex");
        };
        const [digests] = await Promise.all([
            Promise.all(Array.from({ length: 50 }, reader)),
            place("v2026.01.02", crypto.randomBytes(SIZE)),
        ]);
        assert.deepEqual([...new Set(digests)], [v1.sha256]);
    });

    it("clients that disconnect mid-download leave no open file, and the server keeps answering", async () => {
        const before = openFds();
        for (let i = 0; i < 10; i++) {
            await new Promise<void>((resolve) => {
                const req = http.get({ host: "127.0.0.1", port, path: v1.url, agent: false }, (res) => {
                    res.once("data", () => {
                        req.destroy();
                        resolve();
                    });
                });
                req.on("error", () => resolve());
            });
        }
        // The server notices the closed sockets asynchronously.
        const deadline = Date.now() + 5000;
        while (openFds() > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.ok(openFds() <= before, `file descriptors: ${before} before, ${openFds()} after the cut clients`);
        const whole = await get(port, v1.url);
        assert.equal(whole.status, 200);
        assert.equal(crypto.createHash("sha256").update(whole.body).digest("hex"), v1.sha256);
    });
});
