import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { artifactPaths, artifactUrl, ensureStoreRoot, readVersionLedger, recordVersion, removeStoreRootIfEmpty } from "../../lib/publish/store";
import { takenVersions } from "../../providers/imageBuild";

describe("lib/store: layout, URLs and the version ledger", () => {
    let root: string;
    beforeEach(() => {
        root = fs.mkdtempSync(path.join(os.tmpdir(), "if-store-"));
    });
    afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

    it("maps an image version to its stable path and URL", () => {
        const p = artifactPaths("/srv/artifacts", "debian-12-minimal", "v2026.11.25");
        assert.equal(p.file, "/srv/artifacts/images/debian-12-minimal/v2026.11.25/debian-12-minimal-v2026.11.25.qcow2");
        assert.equal(p.sha256File, `${p.file}.sha256`);
        assert.equal(artifactUrl("http://127.0.0.1:8089/", p.relFile), "http://127.0.0.1:8089/images/debian-12-minimal/v2026.11.25/debian-12-minimal-v2026.11.25.qcow2");
        assert.throws(() => artifactPaths("/a", "../etc", "v1"), /unsafe image name/);
        assert.throws(() => artifactPaths("/a", "x", "v1/../../y"), /unsafe version/);
    });

    it("never gives a version to a second build, even after its files are gone", async () => {
        await recordVersion(root, "img", "v2026.01.01", "key-a");
        await recordVersion(root, "img", "v2026.01.01", "key-a"); // idempotent
        await assert.rejects(recordVersion(root, "img", "v2026.01.01", "key-b"), /already given to build key-a; versions are never reused/);
        fs.mkdirSync(path.join(root, "images", "img", "v2026.01.02"), { recursive: true });
        fs.writeFileSync(path.join(root, "images", "img", "v2026.01.02", "build.json"), JSON.stringify({ buildKey: "key-c" }));
        assert.deepEqual(takenVersions(root, "img", "key-b").sort(), ["v2026.01.01", "v2026.01.02"]);
        assert.deepEqual(takenVersions(root, "img", "key-a"), ["v2026.01.02"]);
        assert.deepEqual(Object.keys(readVersionLedger(root, "img")), ["v2026.01.01"]);
    });

    it("creates the store root idempotently and removes only what is empty", async () => {
        await ensureStoreRoot(root);
        await ensureStoreRoot(root);
        assert.deepEqual(fs.readdirSync(root).sort(), ["images", "store.json"]);
        fs.mkdirSync(path.join(root, "images", "x", "v1"), { recursive: true });
        fs.writeFileSync(path.join(root, "images", "x", "v1", "keep.file"), "x");
        await removeStoreRootIfEmpty(root);
        assert.ok(fs.existsSync(path.join(root, "images", "x", "v1", "keep.file")));
        assert.ok(!fs.existsSync(path.join(root, "store.json")));
        await assert.rejects(ensureStoreRoot("relative/root"), /must be an absolute path/);
    });
});
