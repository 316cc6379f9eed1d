// @slow: a flipped byte in a published artifact (the store's file, which is a hard link of the cached build output)
// through the real engine: the next preview notices without re-hashing (size kept, modification time changed),
// refresh re-hashes and drops the damaged build and stored copy, and the next up builds again and converges; damaged
// bytes are never stored (the store refuses a build output whose digest is not the recorded one).
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { provider as storedArtifact } from "../../providers/storedArtifact";
import { localStack, type LocalStack } from "../helpers/localStack";

interface ImageOut { version: string; sha256: string; size: number; storePath: string; buildKey: string }

const sha256Of = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");

/** Flips one byte in the middle of a file, in place: same size, new modification time. */
function flipByte(file: string): void {
    const fd = fs.openSync(file, "r+");
    try {
        const at = Math.floor(fs.fstatSync(fd).size / 2);
        const b = Buffer.alloc(1);
        fs.readSync(fd, b, 0, 1, at);
        b[0] ^= 0xff;
        fs.writeSync(fd, b, 0, 1, at);
    } finally {
        fs.closeSync(fd);
    }
}

describe("corruption: a flipped byte in a stored artifact / cached build @slow", function () {
    this.timeout(1_800_000);
    let env: LocalStack;
    let first: ImageOut;
    const image = async () => ((await env.project.outputs("local")).images as Record<string, ImageOut>)["debian-12-minimal"];

    before(async () => {
        env = await localStack();
        await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"]);
        first = await image();
        assert.equal(sha256Of(first.storePath), first.sha256);
    });
    after(async () => env?.close());

    it("preview notices the damage without re-hashing; refresh drops it; up rebuilds and converges", async () => {
        flipByte(first.storePath);
        assert.notEqual(sha256Of(first.storePath), first.sha256);
        const plan = await env.project.previewSummary("local");
        assert.ok((plan.replace ?? 0) + (plan.update ?? 0) > 0, `the preview must show the repair: ${JSON.stringify(plan)}`);

        await env.project.pulumi(["refresh", "--stack", "local", "--yes"]);
        const state = await env.project.exportState("local");
        const types = (state.deployment.resources ?? []).map((r) => String(r.type));
        assert.ok(!types.some((t) => t.endsWith(":ImageBuild")), "refresh must drop the damaged build");
        assert.ok(!types.some((t) => t.endsWith(":StoredArtifact")), "refresh must drop the damaged stored copy");

        const up = await env.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"]);
        assert.match(up.all, /the cached build [0-9a-f]{12} is damaged \(its file hashes to [0-9a-f]{64}, it was built as [0-9a-f]{64}\): removing it and building again/);
        const after = await image();
        assert.equal(sha256Of(after.storePath), after.sha256, "the store serves what the outputs say");
        assert.equal(after.buildKey, first.buildKey);
        const again = await env.project.upEvents("local");
        assert.deepEqual(Object.keys(again.changes), ["same"], JSON.stringify(again.changes));
    });

    it("the store refuses a build output whose bytes are not the recorded ones: nothing is stored", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-corrupt-"));
        try {
            const source = path.join(dir, "x.qcow2");
            fs.writeFileSync(source, crypto.randomBytes(4096));
            for (const f of ["build.json", "pkg-manifest.txt", "build.log"]) fs.writeFileSync(path.join(dir, f), "{}");
            const recorded = sha256Of(source);
            flipByte(source);
            const storeRoot = path.join(dir, "store");
            await assert.rejects(storedArtifact.create!({
                storeRoot, baseUrl: "http://127.0.0.1:1", name: "x", version: "v2026.01.01", source, sha256: recorded, size: 4096,
                buildJsonPath: path.join(dir, "build.json"), pkgManifestPath: path.join(dir, "pkg-manifest.txt"), logPath: path.join(dir, "build.log"),
            }), new RegExp(`has sha256 [0-9a-f]{64} \\(4096 bytes\\), the build recorded ${recorded} \\(4096\\): the build output is damaged, nothing was stored: run pulumi refresh`));
            assert.equal(fs.existsSync(path.join(storeRoot, "images", "x", "v2026.01.01", "x-v2026.01.01.qcow2")), false);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
