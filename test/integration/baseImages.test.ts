// The base-image manager, hermetic: a loopback HTTP server serves files this test makes (among them a real fixed
// VHD, made from a raw disk by qemu-img), and misbehaves on demand.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { ensureImage, imageDir, type ManagedImageSpec } from "../../lib/baseImages/cache";
import { download } from "../../lib/baseImages/download";
import { readVhdFooter, stripVhdFooter } from "../../lib/baseImages/transforms";
import { startFileServer, type FileServer } from "../helpers/fileServer";
import { REPO_ROOT } from "../helpers/setup";

const sha = (b: Buffer | string) => crypto.createHash("sha256").update(b).digest("hex");

describe("ManagedBaseImage manager: download, verify, transform, cache", function () {
    this.timeout(120_000);
    let work: string;
    let files: string;
    let server: FileServer;
    let raw: string;
    let spec: ManagedImageSpec;
    let lines: string[];

    const artifact = (name: string, filename: string, transforms: ManagedImageSpec["artifacts"][number]["transforms"] = []) => {
        const b = fs.readFileSync(path.join(files, filename));
        return { name, url: `${server.url}/${filename}`, sha256: sha(b), size: b.length, filename, transforms };
    };
    const cacheRoot = () => path.join(work, "cache");
    const ensure = (s = spec, extra: Partial<Parameters<typeof ensureImage>[1]> = {}) =>
        ensureImage(s, { cacheRoot: cacheRoot(), progress: (l) => lines.push(l), progressEveryMs: 0, retryDelayMs: 10, ...extra });

    before(async () => {
        work = fs.mkdtempSync(path.join(os.tmpdir(), "if-base-"));
        files = path.join(work, "upstream");
        fs.mkdirSync(files);
        // A raw disk with an MBR and an ext4 partition holding a file, then a real fixed VHD made from it.
        const tree = path.join(work, "tree");
        fs.mkdirSync(path.join(tree, "etc"), { recursive: true });
        fs.writeFileSync(path.join(tree, "etc", "os-release"), "ID=test\n");
        raw = path.join(work, "disk.raw");
        const fsImg = path.join(work, "fs.ext4");
        await execa("truncate", ["-s", "15M", fsImg]);
        await execa("mkfs.ext4", ["-q", "-F", "-d", tree, fsImg]);
        await execa("truncate", ["-s", "16M", raw]);
        await execa("sfdisk", ["-q", raw], { input: "label: dos\n2048,,83\n" });
        await execa("dd", [`if=${fsImg}`, `of=${raw}`, "bs=1M", "seek=1", "conv=notrunc", "status=none"]);
        await execa("qemu-img", ["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", raw, path.join(files, "disk.vhd")]);
        fs.writeFileSync(path.join(files, "vmlinuz"), crypto.randomBytes(3 * 1024 * 1024 + 11));
        server = await startFileServer(files);
        spec = {
            id: "test-vm", version: "v1", description: "test",
            artifacts: [
                artifact("rootfs", "disk.vhd", [{ kind: "StripVhdFooter" }, { kind: "QemuImgConvert", from: "raw", to: "qcow2" }, { kind: "Rename", to: "rootfs.qcow2" }]),
                artifact("kernel", "vmlinuz"),
            ],
            qemu: { kernel: "kernel", append: "console=ttyS0", disk: { artifact: "rootfs", interface: "virtio", format: "qcow2" } },
        };
    });
    beforeEach(() => {
        lines = [];
    });
    after(async () => {
        await server.stop();
        fs.rmSync(work, { recursive: true, force: true });
    });

    it("runs the pipeline VHD -> strip footer -> qcow2 -> rename, checked with qemu-img, and records a manifest", async () => {
        assert.equal(readVhdFooter(path.join(files, "disk.vhd")).type, "fixed");
        const r = await ensure();
        assert.deepEqual(r.actions, { rootfs: "fetched", kernel: "fetched" });
        const q = r.files.rootfs.path;
        assert.equal(path.basename(q), "rootfs.qcow2");
        const info = JSON.parse((await execa("qemu-img", ["info", "--output=json", q])).stdout);
        assert.equal(info.format, "qcow2");
        assert.equal(info["virtual-size"], 16 * 1024 * 1024);
        await execa("qemu-img", ["check", q]);
        const cmp = await execa("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", raw, q], { reject: false });
        assert.equal(cmp.exitCode, 0, `the transformed disk differs from the original raw disk: ${cmp.stdout}`);
        const manifest = JSON.parse(fs.readFileSync(path.join(imageDir(cacheRoot(), "test-vm", "v1"), "manifest.json"), "utf8"));
        assert.equal(manifest.artifacts.rootfs.file, "rootfs.qcow2");
        assert.equal(manifest.artifacts.rootfs.sha256, sha(fs.readFileSync(q)));
        assert.equal(manifest.artifacts.rootfs.sourceUrl, `${server.url}/disk.vhd`);
        assert.equal(manifest.artifacts.kernel.sourceSha256, spec.artifacts[1].sha256);
        assert.match(manifest.artifacts.kernel.createdAt, /^\d{4}-/);
        assert.match(manifest.specHash, /^[0-9a-f]{64}$/);
        assert.ok(lines.some((l) => /^→ test-vm v1: downloading rootfs \(\d+ MB \/ 17 MB\)…$/.test(l)), lines.join("\n"));
        assert.match(fs.readFileSync(path.join(cacheRoot(), "logs", "image-manager.log"), "utf8"), /test-vm v1: rootfs ready: rootfs\.qcow2 sha256/);
        assert.deepEqual(fs.readdirSync(path.join(cacheRoot(), "downloads")), [], "downloads are not kept once transformed");
    });

    it("a cache hit needs no network: it works with nothing listening", async () => {
        const before = server.requests.length;
        const dead = await startFileServer(files);
        await dead.stop(); // a mirror URL where nothing listens: any network access would fail
        const r = await ensure(spec, { mirror: dead.url });
        assert.deepEqual(r.actions, { rootfs: "hit", kernel: "hit" });
        assert.deepEqual(lines, ["→ test-vm v1: cache hit (skipping download)"]);
        assert.equal(server.requests.length, before);
    });

    it("fetches from a file:// mirror (a hermetic way to seed a cache for CI)", async () => {
        const r = await ensure({ ...spec, id: "mirrored" }, { mirror: `file://${files}` });
        assert.deepEqual(r.actions, { rootfs: "fetched", kernel: "fetched" });
        assert.equal(r.files.kernel.sha256, spec.artifacts[1].sha256);
    });

    it("resumes an interrupted download with a Range request: about one file's bytes in total", async () => {
        const big = crypto.randomBytes(8 * 1024 * 1024);
        fs.writeFileSync(path.join(files, "big.img"), big);
        server.behave("big.img", { dropAfter: { bytes: 3 * 1024 * 1024, times: 1 } });
        const s: ManagedImageSpec = { ...spec, id: "resume", artifacts: [artifact("disk", "big.img")] };
        const sentBefore = server.bytesSent();
        const r = await ensure(s);
        assert.equal(r.files.disk.sha256, sha(big));
        const sent = server.bytesSent() - sentBefore;
        assert.ok(sent >= big.length && sent < big.length * 1.05, `fetched ${sent} bytes for a ${big.length}-byte file`);
        const reqs = server.requests.filter((q) => q.path === "big.img");
        assert.deepEqual(reqs.map((q) => q.status), [200, 206]);
        const resumedAt = Number(/^bytes=(\d+)-$/.exec(reqs[1].range ?? "")?.[1]);
        assert.ok(resumedAt > 0 && resumedAt <= 3 * 1024 * 1024, `resumed at ${resumedAt}`);
    });

    it("follows a mirror's redirects (relative and absolute) and asks for the file's own bytes, not a gzip of them", async () => {
        const data = crypto.randomBytes(2 * 1024 * 1024);
        fs.writeFileSync(path.join(files, "moved.img"), data);
        server.behave("elsewhere.img", { redirectTo: "/hop.img" });
        server.behave("hop.img", { redirectTo: `${server.url}/moved.img` });
        const r = await ensure({ ...spec, id: "redirected", artifacts: [{ ...artifact("disk", "moved.img"), url: `${server.url}/elsewhere.img` }] });
        assert.equal(r.files.disk.sha256, sha(data));
        assert.deepEqual(server.requests.filter((q) => /^(elsewhere|hop|moved)\.img$/.test(q.path)).map((q) => `${q.path} ${q.status}`),
            ["elsewhere.img 302", "hop.img 302", "moved.img 200"]);
        assert.equal(server.requests.find((q) => q.path === "moved.img")?.acceptEncoding, "identity");
    });

    it("gives up on a mirror that stops sending (idle timeout), keeping what arrived for the next run", async () => {
        const data = crypto.randomBytes(1024 * 1024);
        fs.writeFileSync(path.join(files, "stall.img"), data);
        server.behave("stall.img", { stallAfter: 300 * 1024 });
        const dest = path.join(work, "stalled", "stall.img");
        const t0 = Date.now();
        await assert.rejects(download({ url: `${server.url}/stall.img`, dest, expectedSha256: sha(data), retries: 0, timeoutMs: 400 }),
            /^DownloadError: download of \S+ failed: no data for 400 ms; 307200 bytes kept in \S+stall\.img\.partial for the next run to resume$/);
        assert.ok(Date.now() - t0 < 5000, `gave up after ${Date.now() - t0} ms`);
        assert.equal(fs.statSync(`${dest}.partial`).size, 300 * 1024);
        server.behave("stall.img", {});
        const r = await download({ url: `${server.url}/stall.img`, dest, expectedSha256: sha(data), retries: 0 });
        assert.deepEqual([r.sha256, r.resumed, r.bytesFetched], [sha(data), true, data.length - 300 * 1024]);
    });

    it("restarts cleanly when the server ignores Range", async () => {
        const data = crypto.randomBytes(4 * 1024 * 1024);
        fs.writeFileSync(path.join(files, "norange.img"), data);
        server.behave("norange.img", { dropAfter: { bytes: 1024 * 1024, times: 1 }, ignoreRange: true });
        const r = await ensure({ ...spec, id: "norange", artifacts: [artifact("disk", "norange.img")] });
        assert.equal(r.files.disk.sha256, sha(data));
        const reqs = server.requests.filter((q) => q.path === "norange.img");
        assert.deepEqual(reqs.map((q) => q.status), [200, 200]);
    });

    it("refuses a checksum mismatch (expected vs got) and removes the bad file", async () => {
        const bad = { ...spec, id: "mismatch", artifacts: [{ ...artifact("kernel", "vmlinuz"), sha256: "0".repeat(64) }] };
        await assert.rejects(ensure(bad), (err: Error & { kind?: string }) =>
            err.kind === "checksum" && /checksum mismatch for kernel .*expected sha256 0{64} .*got [0-9a-f]{64}.*the file was removed/.test(err.message));
        assert.deepEqual(fs.readdirSync(path.join(cacheRoot(), "downloads")).filter((f) => f.startsWith("mismatch")), []);
    });

    it("names the HTTP status of a failed download, and says when we are offline with an empty cache", async () => {
        const missing = { ...spec, id: "missing", artifacts: [{ ...artifact("kernel", "vmlinuz"), url: `${server.url}/nope` }] };
        await assert.rejects(ensure(missing), (err: Error & { kind?: string }) => err.kind === "download" && /HTTP 404/.test(err.message));
        const down = await startFileServer(files);
        const url = down.url;
        await down.stop();
        const offline = { ...spec, id: "offline", artifacts: [{ ...artifact("kernel", "vmlinuz"), url: `${url}/vmlinuz` }] };
        await assert.rejects(ensure(offline, { retries: 1 }), (err: Error & { kind?: string }) =>
            err.kind === "offline" && /cannot fetch kernel and the cache is empty: .*connection refused/.test(err.message) && /hydrate-base-images/.test(err.message));
    });

    it("says qemu-img is missing (and which package has it) before downloading anything", async () => {
        const saved = process.env.PATH;
        process.env.PATH = "/nonexistent";
        try {
            const s = { ...spec, id: "noqemu", artifacts: [spec.artifacts[0]] };
            await assert.rejects(ensure(s), (err: Error & { kind?: string }) => err.kind === "tool" && /qemu-img is not installed .*qemu-utils/.test(err.message));
        } finally {
            process.env.PATH = saved;
        }
        assert.equal(server.requests.filter((q) => q.path === "disk.vhd").length, 1, "it downloaded before checking for qemu-img");
    });

    it("catalog drift or a corrupt file redoes exactly the files concerned", async () => {
        fs.writeFileSync(path.join(files, "vmlinuz2"), crypto.randomBytes(1024 * 1024));
        const drifted = { ...spec, artifacts: [spec.artifacts[0], artifact("kernel", "vmlinuz2")] };
        const r = await ensure(drifted);
        assert.deepEqual(r.actions, { rootfs: "hit", kernel: "fetched" });
        fs.appendFileSync(r.files.rootfs.path, "x");
        const again = await ensure(drifted);
        assert.deepEqual(again.actions, { rootfs: "fetched", kernel: "hit" });
    });

    it("decompresses gz, xz and zst while streaming; refuses to strip a footer from a non-VHD", async () => {
        const payload = crypto.randomBytes(2 * 1024 * 1024);
        fs.writeFileSync(path.join(files, "p.img.gz"), zlib.gzipSync(payload));
        fs.writeFileSync(path.join(files, "p.img"), payload);
        await execa("xz", ["-k", "-f", path.join(files, "p.img")]);
        await execa("zstd", ["-q", "-f", path.join(files, "p.img"), "-o", path.join(files, "p.img.zst")]);
        for (const ext of ["gz", "xz", "zst"]) {
            const r = await ensure({ ...spec, id: `dec-${ext}`, artifacts: [artifact("disk", `p.img.${ext}`, [{ kind: "Decompress" }])] });
            assert.equal(path.basename(r.files.disk.path), "p.img");
            assert.equal(r.files.disk.sha256, sha(payload));
        }
        const notVhd = path.join(work, "not.vhd");
        fs.writeFileSync(notVhd, crypto.randomBytes(4096));
        assert.throws(() => stripVhdFooter(notVhd), /no VHD footer .*"conectix" cookie.*refusing/);
        const dynamic = path.join(work, "dyn.vhd");
        await execa("qemu-img", ["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic", raw, dynamic]);
        assert.throws(() => stripVhdFooter(dynamic), /is a dynamic VHD; .*QemuImgConvert \{ from: "vpc" \}/);
    });

    it("bin/hydrate-base-images fills a cache from a file:// mirror without the network", async () => {
        const r = await execa(path.join(REPO_ROOT, "bin", "hydrate-base-images"), ["--id", "alpine-minimal", "--cache", path.join(work, "hyd"), "--mirror", `file://${path.join(work, "empty-mirror")}`], { reject: false });
        assert.equal(r.exitCode, 1);
        assert.match(r.stderr, /alpine-minimal v1: .*no such file/);
    });
});
