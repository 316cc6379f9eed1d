// ManagedBaseImage through the real engine: a catalog entry (written into the project copy) served by a loopback
// server; up fetches, verifies and caches it; a second up is a no-op even with the server gone; catalog drift
// shows up as a diff.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startFileServer, type FileServer } from "../helpers/fileServer";
import { TestProject } from "../helpers/project";

describe("ManagedBaseImage through pulumi up", function () {
    this.timeout(300_000);
    let project: TestProject;
    let server: FileServer;
    let upstream: string;

    const writeCatalog = (kernel: Buffer) => {
        fs.writeFileSync(path.join(upstream, "vmlinuz"), kernel);
        const entry = {
            id: "test-vm", version: "v1", description: "test",
            artifacts: [{ name: "kernel", url: `${server.url}/vmlinuz`, sha256: crypto.createHash("sha256").update(kernel).digest("hex"), size: kernel.length, filename: "vmlinuz", transforms: [] }],
            qemu: { kernel: "kernel", disk: { artifact: "kernel", interface: "virtio", format: "raw" } },
        };
        fs.writeFileSync(path.join(project.dir, "images", "catalog.ts"), `export const catalog = ${JSON.stringify([entry], null, 2)};\n`);
        return entry;
    };

    before(async () => {
        project = TestProject.create();
        upstream = fs.mkdtempSync(path.join(os.tmpdir(), "if-upstream-"));
        server = await startFileServer(upstream);
        await project.initStack("local");
        await project.setConfig("local", "factory:images", "[]");
        await project.setConfig("local", "factory:baseImages", JSON.stringify([{ id: "test-vm", version: "v1" }]));
    });
    after(async () => {
        await server.stop();
        project.remove();
        fs.rmSync(upstream, { recursive: true, force: true });
    });

    it("fetches into <cache>/images/<id>/<version>/ and exposes path and sha256; a second up is a no-op without the server", async () => {
        const entry = writeCatalog(crypto.randomBytes(512 * 1024));
        const up = await project.upEvents("local");
        assert.ok(up.diagnostics.some((d) => /→ test-vm v1: downloading kernel/.test(d.message) && d.urn?.includes("BaseImageFetch")), "no progress line");
        const out = (await project.outputs("local")).baseImageCache as Record<string, { path: string; sha256: string }>;
        assert.equal(out["test-vm@v1"].path, path.join(project.dir, ".cache", "base-images", "images", "test-vm", "v1", "vmlinuz"));
        assert.equal(out["test-vm@v1"].sha256, entry.artifacts[0].sha256);

        await server.stop();
        const second = await project.upEvents("local");
        assert.deepEqual(Object.keys(second.changes), ["same"]);
        server = await startFileServer(upstream);
    });

    it("a changed catalog entry is drift: preview shows the base image will be fetched again", async () => {
        writeCatalog(crypto.randomBytes(256 * 1024)); // new URL (new server port) and new digest
        const r = await project.pulumi(["preview", "--stack", "local", "--json"]);
        const steps = (JSON.parse(r.stdout) as { steps: Array<{ op: string; urn: string }> }).steps;
        assert.ok(steps.some((s) => s.op === "replace" && s.urn.endsWith("::base-test-vm-v1-fetch")), steps.map((s) => `${s.op} ${s.urn}`).join("\n"));
    });

    it("an unknown base image fails the preview naming the known ones", async () => {
        await project.setConfig("local", "factory:baseImages", JSON.stringify([{ id: "nope", version: "v9" }]));
        const r = await project.pulumi(["preview", "--stack", "local"], { reject: false });
        assert.notEqual(r.exitCode, 0);
        assert.match(r.all, /no base image nope v9 in images\/catalog\.ts; known: test-vm v1/);
    });
});
