// lib/oci and the fetch command against a real registry on loopback (Debian's docker-registry), with and without
// htpasswd auth, using the real oras built by tools/build.sh.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fetchArtifact } from "../../lib/publish/fetchArtifact";
import { attach, fetchManifest, IN_TOTO_MEDIA_TYPE, orasBinary, parseOciRef, pushArtifact, referrers, type OciTarget } from "../../lib/publish/oci";
import { startCutProxy } from "../helpers/cutProxy";
import { startRegistry, type TestRegistry } from "../helpers/registry";
import { REPO_ROOT } from "../helpers/setup";

const MEDIA = "application/vnd.deevnet.qcow2";

describe("OCI distribution with oras against a real registry", function () {
    this.timeout(120_000);
    let registry: TestRegistry;
    let dir: string;
    let file: string;
    let sha: string;

    before(async () => {
        registry = await startRegistry();
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-oci-"));
        file = path.join(dir, "demo-v2026.01.01.qcow2");
        fs.writeFileSync(file, crypto.randomBytes(3 * 1024 * 1024 + 5));
        sha = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    });
    after(async () => {
        await registry.stop();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    const target = (): OciTarget => ({ registry: registry.host, repository: "lab/demo", plainHttp: true });
    const annotations = { "org.opencontainers.image.title": "demo-v2026.01.01.qcow2", "org.opencontainers.image.version": "v2026.01.01", "org.opencontainers.image.created": "2026-01-01T00:00:00Z" };

    it("pushes an oras-compatible artifact: media type, artifact type, title, all tags; layer digest = sha256:<file>", async () => {
        const r = await pushArtifact({ target: target(), tags: ["v2026.01.01", "latest"], file, mediaType: MEDIA, artifactType: MEDIA, annotations }, sha);
        assert.equal(r.uploaded, true);
        assert.equal(r.layerDigest, `sha256:${sha}`);
        assert.equal(r.size, fs.statSync(file).size);
        const m = JSON.parse((await execa(orasBinary(), ["manifest", "fetch", "--plain-http", `${registry.host}/lab/demo:v2026.01.01`])).stdout);
        assert.equal(m.artifactType, MEDIA);
        assert.equal(m.layers[0].mediaType, MEDIA);
        assert.equal(m.layers[0].annotations["org.opencontainers.image.title"], "demo-v2026.01.01.qcow2");
        assert.equal(m.annotations["org.opencontainers.image.version"], "v2026.01.01");
        assert.equal((await fetchManifest(target(), "latest"))?.digest, r.manifestDigest);
        const pulled = path.join(dir, "pulled");
        await execa(orasBinary(), ["pull", "--plain-http", "-o", pulled, `${registry.host}/lab/demo:v2026.01.01`]);
        assert.equal(crypto.createHash("sha256").update(fs.readFileSync(path.join(pulled, "demo-v2026.01.01.qcow2"))).digest("hex"), sha);
    });

    it("a second push of the same artifact uploads nothing (no PUT, POST or PATCH)", async () => {
        const before = registry.writes();
        const r = await pushArtifact({ target: target(), tags: ["v2026.01.01", "latest"], file, mediaType: MEDIA, artifactType: MEDIA, annotations }, sha);
        assert.equal(r.uploaded, false);
        assert.equal(registry.writes(), before);
    });

    it("a connection cut mid-upload is retried (bounded, logged) and the registry ends with the right bytes", async () => {
        const [host, port] = registry.host.split(":");
        const proxy = await startCutProxy({ host, port: Number(port) }, { afterBytes: 1024 * 1024, cuts: 1 });
        const lines: string[] = [];
        try {
            const cutFile = path.join(dir, "cut-v2026.01.01.qcow2");
            fs.writeFileSync(cutFile, crypto.randomBytes(3 * 1024 * 1024));
            const cutSha = crypto.createHash("sha256").update(fs.readFileSync(cutFile)).digest("hex");
            const t = { ...target(), registry: proxy.address, repository: "lab/cut" };
            const r = await pushArtifact({ target: t, tags: ["v2026.01.01"], file: cutFile, mediaType: MEDIA, artifactType: MEDIA, annotations, log: (l) => lines.push(l), retryDelayMs: 10 }, cutSha);
            assert.equal(proxy.cut, 1, "the proxy must have cut the first upload");
            assert.equal(r.layerDigest, `sha256:${cutSha}`);
            assert.match(lines.join("\n"), /^pushing cut-v2026\.01\.01\.qcow2 to 127\.0\.0\.1:\d+\/lab\/cut: .+; retry 1\/2 in 10 ms$/m);
            const pulled = path.join(dir, "pulled-cut");
            await execa(orasBinary(), ["pull", "--plain-http", "-o", pulled, `${registry.host}/lab/cut:v2026.01.01`]);
            assert.equal(crypto.createHash("sha256").update(fs.readFileSync(path.join(pulled, "cut-v2026.01.01.qcow2"))).digest("hex"), cutSha);
        } finally {
            await proxy.close();
        }
    });

    it("a registry that keeps cutting gives up after the bound with the registry's error, not a hang", async () => {
        const [host, port] = registry.host.split(":");
        const proxy = await startCutProxy({ host, port: Number(port) }, { afterBytes: 64 * 1024, cuts: 100 });
        const lines: string[] = [];
        try {
            const t = { ...target(), registry: proxy.address, repository: "lab/always-cut" };
            await assert.rejects(pushArtifact({ target: t, tags: ["v2026.01.01"], file, mediaType: MEDIA, artifactType: MEDIA, annotations, log: (l) => lines.push(l), retryDelayMs: 10 }, sha),
                /registry 127\.0\.0\.1:\d+ is unreachable|EOF|connection reset|broken pipe/);
            assert.equal(lines.filter((l) => /retry \d\/2/.test(l)).length, 2, lines.join("\n"));
        } finally {
            await proxy.close();
        }
    });

    it("refuses when the registry's layer digest is not the local sha256", async () => {
        await assert.rejects(pushArtifact({ target: target(), tags: ["other"], file, mediaType: MEDIA, artifactType: MEDIA, annotations }, "0".repeat(64)),
            /the registry holds layer sha256:[0-9a-f]{64} for demo-v2026\.01\.01\.qcow2, but its local sha256 is 0{64}/);
    });

    it("attaches provenance as a referrer that oras discover lists", async () => {
        const m = await fetchManifest(target(), "v2026.01.01");
        const prov = path.join(dir, "provenance.intoto.json");
        fs.writeFileSync(prov, JSON.stringify({ _type: "https://in-toto.io/Statement/v1", subject: [{ name: "demo", digest: { sha256: sha } }] }));
        const d = await attach(target(), m?.digest as string, prov, IN_TOTO_MEDIA_TYPE, IN_TOTO_MEDIA_TYPE);
        const refs = await referrers(target(), m?.digest as string);
        assert.deepEqual(refs.map((x) => [x.artifactType, x.digest]), [[IN_TOTO_MEDIA_TYPE, d]]);
        const cli = await execa(orasBinary(), ["discover", "--plain-http", "--format", "tree", `${registry.host}/lab/demo:v2026.01.01`]);
        assert.match(cli.stdout, /application\/vnd\.in-toto\+json/);
    });

    it("fetch: oci:// round trip into <cache>/<image>/<sha256>/, digest-mismatch refusal, no .qcow2 error", async () => {
        const cache = path.join(dir, "cache");
        const ok = await execa(path.join(REPO_ROOT, "bin", "fetch"), [`oci://${registry.host}/lab/demo:v2026.01.01`, "--sha256", sha, "--plain-http", "--cache", cache]);
        assert.equal(ok.stdout.trim(), path.join(cache, "demo", sha, "demo-v2026.01.01.qcow2"));
        assert.equal(crypto.createHash("sha256").update(fs.readFileSync(ok.stdout.trim())).digest("hex"), sha);
        const again = await execa(path.join(REPO_ROOT, "bin", "fetch"), [`oci://${registry.host}/lab/demo:latest`, "--sha256", sha, "--plain-http", "--cache", cache]);
        assert.match(again.stderr, /cache hit, verified/);

        const wrong = "f".repeat(64);
        const bad = await execa(path.join(REPO_ROOT, "bin", "fetch"), [`oci://${registry.host}/lab/demo:v2026.01.01`, "--sha256", wrong, "--plain-http", "--cache", cache], { reject: false });
        assert.equal(bad.exitCode, 1);
        assert.match(bad.stderr, new RegExp(`refusing .*: its \\.qcow2 has sha256 ${sha}, expected ${wrong}`));
        assert.equal(fs.existsSync(path.join(cache, "demo", wrong)), false);
        assert.deepEqual(fs.readdirSync(cache).filter((f) => f.startsWith(".fetch-")), [], "a temp dir was left behind");

        const txt = path.join(dir, "notes.txt");
        fs.writeFileSync(txt, "not an image");
        await execa(orasBinary(), ["push", "--plain-http", `${registry.host}/lab/notes:v1`, "notes.txt:text/plain"], { cwd: dir });
        const none = await execa(path.join(REPO_ROOT, "bin", "fetch"), [`oci://${registry.host}/lab/notes:v1`, "--sha256", sha, "--plain-http", "--cache", cache], { reject: false });
        assert.match(none.stderr, /No \.qcow2 payload found in oci:\/\//);
    });

    it("names the fix when oras is missing or the registry is unreachable", async () => {
        const saved = process.env.ORAS;
        process.env.ORAS = "/nonexistent/oras";
        try {
            assert.throws(() => orasBinary(), /ORAS=\/nonexistent\/oras does not exist/);
        } finally {
            if (saved === undefined) delete process.env.ORAS;
            else process.env.ORAS = saved;
        }
        await assert.rejects(fetchManifest({ registry: "127.0.0.1:9", repository: "x/y", plainHttp: true }, "v1"),
            /registry 127\.0\.0\.1:9 is unreachable: check factory:oci\.registry/);
        assert.deepEqual(parseOciRef("oci://127.0.0.1:5000/a/b/c:v1"), { registry: "127.0.0.1:5000", repository: "a/b/c", reference: "v1" });
        assert.throws(() => parseOciRef("https://x/y:z"), /not an oci:\/\/ reference/);
    });

    describe("with htpasswd auth", () => {
        let secured: TestRegistry;
        before(async () => {
            secured = await startRegistry({ auth: { user: "builder", password: "right-password" } });
        });
        after(async () => secured.stop());

        it("pushes with the password on stdin, and explains a 401 naming the token scope", async () => {
            const t = (password: string): OciTarget => ({ registry: secured.host, repository: "lab/demo", plainHttp: true, username: "builder", password });
            await assert.rejects(pushArtifact({ target: t("wrong-password"), tags: ["v1"], file, mediaType: MEDIA, artifactType: MEDIA, annotations }, sha),
                (err: Error) => /refused the credentials \(401 Unauthorized\)/.test(err.message) && /write:packages/.test(err.message) && !err.message.includes("wrong-password"));
            const r = await pushArtifact({ target: t("right-password"), tags: ["v1"], file, mediaType: MEDIA, artifactType: MEDIA, annotations }, sha);
            assert.equal(r.layerDigest, `sha256:${sha}`);
        });
    });
});
