// Release metadata: deterministic files, schema-valid JSON, the Toolsmith manifest, and the changelog's package
// diff between two fixture manifests (Debian version order, checked against dpkg itself).
import { strict as assert } from "node:assert";
import Ajv2020 from "ajv/dist/2020";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { compareDebVersions } from "../../lib/debVersion";
import { diffPackages, parsePkgManifest, readReleaseFiles, renderPackageDiff, writeReleaseMetadata, type ReleaseImageRecord } from "../../lib/publish/releaseMetadata";
import { provider as metadataProvider, type ReleaseMetadataOutputs } from "../../providers/releaseMetadata";
import { REPO_ROOT } from "../helpers/setup";

const FIX = path.join(REPO_ROOT, "test", "fixtures", "manifests");
const sha = (c: string) => c.repeat(64);

function record(version: string, over: Partial<Omit<ReleaseImageRecord, "toolsJson">> = {}): Omit<ReleaseImageRecord, "toolsJson"> {
    const name = `debian-12-minimal-${version}.qcow2`;
    return {
        image: "debian-12-minimal", version, tag: version,
        qcow2: { name, sha256: sha("a"), size: 1234, assetUrl: `https://github.example/deevnet/images/releases/download/${version}/${name}`, storeUrl: `http://127.0.0.1:8089/images/debian-12-minimal/${version}/${name}` },
        sha256Asset: { name: `${name}.sha256`, url: `https://github.example/deevnet/images/releases/download/${version}/${name}.sha256` },
        releaseUrl: `https://github.example/deevnet/images/releases/tag/${version}`,
        oci: { ref: `oci://registry.example.com/deevnet/debian-12-minimal:${version}`, digest: `sha256:${sha("b")}`, layerDigest: `sha256:${sha("a")}` },
        base: { id: "debian:bookworm", sha256: sha("c") },
        gitCommit: "0123456789abcdef0123456789abcdef01234567", buildTime: "2026-01-01T00:00:00.000Z", buildKey: sha("d"),
        ...over,
    };
}

describe("lib/releaseMetadata", () => {
    let dir: string;
    beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-rel-"));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("the ReleaseMetadata resource is the same record in every checkout: no change where the checkout holds it (a runner's fresh clone), a rewrite where it does not", async () => {
        const manifest = path.join(dir, "pkg-manifest.txt");
        fs.copyFileSync(path.join(FIX, "a.txt"), manifest);
        const inputs = { dir: ".", record: record("v2026.12.06"), pkgManifestPath: manifest, source: "asset" as const, primary: true };
        const [first, second] = [path.join(dir, "clone-1"), path.join(dir, "clone-2")];
        fs.mkdirSync(first);
        fs.mkdirSync(second);
        const cwd = process.cwd();
        try {
            process.chdir(first);
            const created = await metadataProvider.create!(inputs);
            const made = { id: created.id, outs: created.outs as ReleaseMetadataOutputs };
            assert.ok(fs.existsSync(path.join(first, "releases", "v2026.12.06.json")));
            assert.equal(made.outs.toolsJsonPath, "manifests/debian-12-minimal.tools.json");
            // Another run, another clone that lacks the files (the metadata commit was lost): a rewrite.
            process.chdir(second);
            assert.equal((await metadataProvider.diff!(made.id, made.outs, inputs)).changes, true);
            // The same clone after git brought the files: nothing to do.
            fs.cpSync(path.join(first, "releases"), path.join(second, "releases"), { recursive: true });
            assert.equal((await metadataProvider.diff!(made.id, made.outs, inputs)).changes, false);
            // Another version is another record.
            const next = { ...inputs, record: record("v2026.12.07") };
            assert.deepEqual((await metadataProvider.diff!(made.id, made.outs, next)).replaces, ["record"]);
        } finally {
            process.chdir(cwd);
        }
    });

    it("orders Debian versions exactly like dpkg --compare-versions", async () => {
        const versions = ["1.0", "1.0-1", "1:0.9", "1.0~rc1", "1.0+b1", "2.36-9+deb12u4", "2.36-9+deb12u10", "0.9.8", "0.10", "1.2a", "1.2", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2", "1:9.2p1-2+deb12u5", "2:9.0.1378-2", "1.0~~"];
        for (const a of versions) {
            for (const b of versions) {
                const lt = (await execa("dpkg", ["--compare-versions", a, "lt", b], { reject: false })).exitCode === 0;
                const eq = (await execa("dpkg", ["--compare-versions", a, "eq", b], { reject: false })).exitCode === 0;
                const ours = compareDebVersions(a, b);
                assert.equal(ours < 0, lt, `${a} < ${b}`);
                assert.equal(ours === 0, eq, `${a} == ${b}`);
            }
        }
    });

    it("diffs two package manifests: added, removed, upgraded", () => {
        const d = diffPackages(parsePkgManifest(fs.readFileSync(path.join(FIX, "a.txt"), "utf8")), parsePkgManifest(fs.readFileSync(path.join(FIX, "b.txt"), "utf8")));
        assert.deepEqual(d.added, [["locales", "2.36-9+deb12u10"]]);
        assert.deepEqual(d.removed, [["vim-tiny", "2:9.0.1378-2"]]);
        assert.deepEqual(d.upgraded, [["base-files", "12.4+deb12u10", "12.4+deb12u11"], ["cloud-init", "22.4.2-1+deb12u3", "22.4.2-1+deb12u4"], ["libssl3", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2"]]);
        assert.deepEqual(d.downgraded, []);
        assert.deepEqual(renderPackageDiff(d), [
            "- added (1): locales 2.36-9+deb12u10",
            "- removed (1): vim-tiny 2:9.0.1378-2",
            "- upgraded (3): base-files 12.4+deb12u10 → 12.4+deb12u11, cloud-init 22.4.2-1+deb12u3 → 22.4.2-1+deb12u4, libssl3 3.0.15-1~deb12u1 → 3.0.17-1~deb12u2",
        ]);
    });

    it("writes schema-valid, deterministic metadata and a changelog with the package diff", async () => {
        await writeReleaseMetadata(dir, record("v2026.01.01"), fs.readFileSync(path.join(FIX, "a.txt"), "utf8"), "asset", { primary: true });
        const second = record("v2026.02.01", { base: { id: "debian:bookworm", sha256: sha("e") }, qcow2: { ...record("v2026.02.01").qcow2, sha256: sha("f") } });
        const changed = await writeReleaseMetadata(dir, second, fs.readFileSync(path.join(FIX, "b.txt"), "utf8"), "asset", { primary: true });
        assert.deepEqual(changed.sort(), ["docs/releases.md", "manifests/debian-12-minimal.tools.json", "manifests/tools.json",
            "releases/manifests/debian-12-minimal-v2026.02.01.txt", "releases/v2026.02.01.json", "releases/v2026.02.01.md"]);
        // The same input again changes nothing (no rewrite, no mtime change).
        assert.deepEqual(await writeReleaseMetadata(dir, second, fs.readFileSync(path.join(FIX, "b.txt"), "utf8"), "asset", { primary: true }), []);

        const ajv = new Ajv2020({ strict: true, allErrors: true });
        ajv.addSchema(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "schemas", "tools.schema.json"), "utf8")));
        const validateRelease = ajv.compile(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "schemas", "release.schema.json"), "utf8")));
        for (const f of readReleaseFiles(dir)) assert.ok(validateRelease(f), JSON.stringify(validateRelease.errors));
        const validateTools = ajv.getSchema("urn:image-factory:schema:tools:1")!;
        const tools = JSON.parse(fs.readFileSync(path.join(dir, "manifests", "tools.json"), "utf8"));
        assert.ok(validateTools(tools), JSON.stringify(validateTools.errors));
        assert.deepEqual(tools, { image: { name: "debian-12-minimal", qcow2: second.qcow2.assetUrl, qcow2_sha256: sha("f"), sha256: "", tarball: "" }, operations: [], tools: {} });
        assert.ok(!validateRelease({ schemaVersion: 1, version: "2026.01.01", images: {} }), "the schema accepts a bad version");

        const changelog = fs.readFileSync(path.join(dir, "docs", "releases.md"), "utf8");
        const newest = changelog.indexOf("## v2026.02.01 — debian-12-minimal");
        const oldest = changelog.indexOf("## v2026.01.01 — debian-12-minimal");
        assert.ok(newest > 0 && oldest > newest, "newest first");
        assert.match(changelog, /- base image: debian:bookworm \(`cccccccccccc`\) → debian:bookworm \(`eeeeeeeeeeee`\)/);
        assert.match(changelog, /- packages since v2026\.01\.01:\n {2}- added \(1\): locales 2\.36-9\+deb12u10\n {2}- removed \(1\): vim-tiny/);
        assert.match(changelog, /first release of debian-12-minimal/);
        const md = fs.readFileSync(path.join(dir, "releases", "v2026.02.01.md"), "utf8");
        assert.match(md, /"qcow2_sha256": "f{64}"/);
    });

    it("points tools.json at the OCI ref or the store when asked, and keeps the consumer's tools and operations", async () => {
        fs.mkdirSync(path.join(dir, "manifests"), { recursive: true });
        fs.writeFileSync(path.join(dir, "manifests", "tools.json"), JSON.stringify({ image: { name: "x", tarball: "", sha256: "", qcow2: "", qcow2_sha256: "" }, tools: { jq: "1.7" }, operations: ["ensure-vm"] }));
        await writeReleaseMetadata(dir, record("v2026.03.01"), "p\t1\tall\n", "oci", { primary: true });
        const tools = JSON.parse(fs.readFileSync(path.join(dir, "manifests", "tools.json"), "utf8"));
        assert.equal(tools.image.qcow2, "oci://registry.example.com/deevnet/debian-12-minimal:v2026.03.01");
        assert.deepEqual([tools.tools, tools.operations], [{ jq: "1.7" }, ["ensure-vm"]]);
        await writeReleaseMetadata(dir, record("v2026.03.02", { qcow2: { ...record("v2026.03.02").qcow2, assetUrl: null }, sha256Asset: null, releaseUrl: null, oci: null }), "p\t1\tall\n", "asset", { primary: false });
        const img = JSON.parse(fs.readFileSync(path.join(dir, "manifests", "debian-12-minimal.tools.json"), "utf8"));
        assert.match(img.image.qcow2, /^http:\/\/127\.0\.0\.1:8089\//, "falls back to the store URL when there is no asset");
    });
});
