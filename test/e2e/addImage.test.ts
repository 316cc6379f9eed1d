// "Adding an image is one new folder plus one line of stack config" (README), proven on the real engine: a new
// ISO recipe folder in a copy of the project and its name in factory:images; `pulumi up` builds it through
// IsoImage, validates it, stores it under its stable URL and pushes it to a loopback OCI registry with the ISO
// media type; a second up changes nothing.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { localStack, type LocalStack } from "../helpers/localStack";
import { startRegistry, type TestRegistry } from "../helpers/registry";
import { REPO_ROOT } from "../helpers/setup";

interface ImageOut { format: string; version: string; sha256: string; size: number; qcow2Url: string; ociRef: string; ociLayerDigest: string; validation: { passed: boolean; checks: string[] } }

function sha256Of(url: string): Promise<string> {
    return new Promise((resolve, reject) => http.get(url, (res) => {
        const h = crypto.createHash("sha256");
        res.on("data", (c: Buffer) => h.update(c)).on("end", () => resolve(h.digest("hex"))).on("error", reject);
    }).on("error", reject));
}

describe("adding an image: one folder, one config line", function () {
    this.timeout(600_000);
    let registry: TestRegistry;
    let env: LocalStack;

    before(async () => {
        registry = await startRegistry();
        env = await localStack({ config: [
            ["factory:images", JSON.stringify(["lab-seed"])],
            ["factory:oci", JSON.stringify({ registry: registry.host, repository: "lab", plainHttp: true })],
        ] });
        // The one new folder: a recipe (here a NoCloud seed ISO for a lab host).
        const dir = path.join(env.project.dir, "images", "lab-seed");
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, "image.ts"), fs.readFileSync(path.join(REPO_ROOT, "images/nocloud-seed-iso/image.ts"), "utf8")
            .replace('name: "nocloud-seed-iso"', 'name: "lab-seed"').replace('hostname: "seeded"', 'hostname: "lab-host"'));
    });
    after(async () => {
        await env?.close();
        await registry?.stop();
    });

    it("pulumi up builds, validates, stores and pushes it; the outputs describe it", async () => {
        const up = await env.project.upEvents("local");
        assert.ok(up.diagnostics.some((d) => /→ lab-seed v\d{4}\.\d{2}\.\d{2}: \[2\/4\] assemble the ISO/.test(d.message)), "no build progress");
        assert.ok(up.diagnostics.some((d) => /lab-seed .*all 6 checks \(offline\) passed/.test(d.message)), "no validation line");
        const out = ((await env.project.outputs("local")).images as Record<string, ImageOut>)["lab-seed"];
        assert.equal(out.format, "iso");
        assert.ok(out.validation.passed);
        assert.ok(out.validation.checks.includes("pass seed.volume-id"));
        assert.match(out.qcow2Url, new RegExp(`/images/lab-seed/${out.version}/lab-seed-${out.version}\\.iso$`));
        assert.equal(await sha256Of(out.qcow2Url), out.sha256);
        assert.equal(out.ociLayerDigest, `sha256:${out.sha256}`);
        const m = JSON.parse((await execa("oras", ["manifest", "fetch", "--plain-http", out.ociRef.replace("oci://", "")])).stdout) as { artifactType: string; layers: Array<{ mediaType: string; annotations: Record<string, string> }> };
        assert.equal(m.artifactType, "application/vnd.deevnet.iso");
        assert.equal(m.layers[0].mediaType, "application/vnd.deevnet.iso");
        assert.equal(m.layers[0].annotations["org.opencontainers.image.title"], `lab-seed-${out.version}.iso`);
        const state = await env.project.exportState("local");
        assert.ok((state.deployment.resources ?? []).some((r) => r.type === "image-factory:image:Image" && String(r.urn).endsWith("::lab-seed")));
    });

    it("a second up changes nothing", async () => {
        const again = await env.project.upEvents("local");
        assert.deepEqual(Object.keys(again.changes), ["same"]);
    });
});
