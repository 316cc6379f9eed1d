// @slow: OciArtifact through `pulumi up --stack local` against a real registry on loopback: push, pull back,
// manifest and provenance, a second up that uploads nothing, refresh after a deleted tag, destroy that keeps the
// artifact, and a wrong password that fails cleanly.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { orasBinary } from "../../lib/publish/oci";
import { localStack, type LocalStack } from "../helpers/localStack";
import { startRegistry, type TestRegistry } from "../helpers/registry";

interface ImageOut { version: string; sha256: string; ociRef: string; ociDigest: string; ociLayerDigest: string; ociProvenanceDigest: string }

const oras = (...args: string[]) => execa(orasBinary(), [...args, "--plain-http"]);

describe("OciArtifact through pulumi up @slow", function () {
    this.timeout(1_800_000);
    let registry: TestRegistry;
    let env: LocalStack;
    let image: ImageOut;
    let ref: string;

    before(async () => {
        registry = await startRegistry();
        env = await localStack({ config: [["factory:oci", JSON.stringify({ registry: registry.host, repository: "lab", plainHttp: true, tags: ["latest"] })]] });
    });
    after(async () => {
        await env?.close();
        await registry?.stop();
    });

    it("pushes the image; oras pull gives back the same bytes", async () => {
        await env.project.upEvents("local");
        image = ((await env.project.outputs("local")).images as Record<string, ImageOut>)["debian-12-minimal"];
        assert.equal(image.ociRef, `oci://${registry.host}/lab/debian-12-minimal:${image.version}`);
        assert.equal(image.ociLayerDigest, `sha256:${image.sha256}`);
        ref = image.ociRef.replace("oci://", "");
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-pull-"));
        try {
            await oras("pull", "-o", dir, ref);
            const file = path.join(dir, `debian-12-minimal-${image.version}.qcow2`);
            assert.equal(crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex"), image.sha256);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("the manifest carries the media type, artifact type and title; latest points at it too", async () => {
        const m = JSON.parse((await oras("manifest", "fetch", ref)).stdout);
        assert.equal(m.artifactType, "application/vnd.deevnet.qcow2");
        assert.equal(m.layers.length, 1);
        assert.equal(m.layers[0].mediaType, "application/vnd.deevnet.qcow2");
        assert.equal(m.layers[0].digest, `sha256:${image.sha256}`);
        assert.equal(m.layers[0].annotations["org.opencontainers.image.title"], `debian-12-minimal-${image.version}.qcow2`);
        assert.equal(m.annotations["org.opencontainers.image.title"], `debian-12-minimal-${image.version}.qcow2`);
        assert.equal(m.annotations["org.opencontainers.image.version"], image.version);
        assert.match(m.annotations["org.opencontainers.image.created"], /^\d{4}-\d{2}-\d{2}T/);
        const latest = JSON.parse((await oras("manifest", "fetch", "--descriptor", `${registry.host}/lab/debian-12-minimal:latest`)).stdout);
        assert.equal(latest.digest, image.ociDigest);
    });

    it("oras discover lists the in-toto provenance referrer, which describes this build", async () => {
        const d = JSON.parse((await oras("discover", "--format", "json", ref)).stdout) as { referrers: Array<{ artifactType: string; digest: string }> };
        const prov = d.referrers.find((r) => r.artifactType === "application/vnd.in-toto+json");
        assert.equal(prov?.digest, image.ociProvenanceDigest);
        const pm = JSON.parse((await oras("manifest", "fetch", `${registry.host}/lab/debian-12-minimal@${prov?.digest}`)).stdout);
        assert.equal(pm.subject.digest, image.ociDigest);
        const stmt = JSON.parse((await oras("blob", "fetch", "--output", "-", `${registry.host}/lab/debian-12-minimal@${pm.layers[0].digest}`)).stdout);
        assert.equal(stmt._type, "https://in-toto.io/Statement/v1");
        assert.deepEqual(stmt.subject, [{ name: `debian-12-minimal-${image.version}.qcow2`, digest: { sha256: image.sha256 } }]);
        const deps = stmt.predicate.buildDefinition.resolvedDependencies as Array<{ name: string; digest: Record<string, string> }>;
        assert.ok(deps.some((x) => x.name === "debian:bookworm" && /^[0-9a-f]{64}$/.test(x.digest.sha256)), JSON.stringify(deps));
        assert.ok(deps.some((x) => x.name === "recipe:debian-12-minimal"));
        assert.match(stmt.predicate.runDetails.builder.version["qemu-img"], /^qemu-img version/);
    });

    it("a second up uploads nothing: no write request reaches the registry", async () => {
        const before = registry.writes();
        const up = await env.project.upEvents("local");
        assert.deepEqual(Object.keys(up.changes), ["same"], JSON.stringify(up.changes));
        assert.equal(registry.writes(), before, JSON.stringify(registry.requests()));
    });

    it("pulumi refresh notices a deleted tag, and the next up publishes it again", async () => {
        await oras("manifest", "delete", "--force", ref);
        await env.project.pulumi(["refresh", "--stack", "local", "--yes"]);
        const state = await env.project.exportState("local");
        assert.ok(!(state.deployment.resources ?? []).some((r) => r.type === "pulumi-nodejs:dynamic/image-factory:OciPush"), "refresh kept a deleted tag");
        const up = await env.project.upEvents("local");
        assert.equal(up.changes.create, 1, JSON.stringify(up.changes));
        const back = JSON.parse((await oras("manifest", "fetch", "--descriptor", ref)).stdout);
        assert.equal(back.digest, image.ociDigest, "re-publishing the same image gives the same manifest");
    });

    it("destroy leaves the published artifact in place (deleteOnDestroy is off by default)", async () => {
        await env.project.pulumi(["destroy", "--stack", "local", "--yes"]);
        const still = JSON.parse((await oras("manifest", "fetch", "--descriptor", ref)).stdout);
        assert.equal(still.digest, image.ociDigest);
    });

    describe("against a registry with htpasswd auth", () => {
        let secured: TestRegistry;
        let env2: LocalStack;
        before(async () => {
            secured = await startRegistry({ auth: { user: "builder", password: "the-right-one" } });
            env2 = await localStack({
                config: [["factory:oci", JSON.stringify({ registry: secured.host, repository: "lab", plainHttp: true, username: "builder" })]],
                env: { GHCR_TOKEN: "a-wrong-password" },
            });
        });
        after(async () => {
            await env2?.close();
            await secured?.stop();
        });

        it("a wrong password fails with a clear 401 naming the token scope, and leaves nothing half-written in state", async () => {
            const r = await env2.project.pulumi(["up", "--stack", "local", "--yes"], { reject: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.all, /refused the credentials \(401 Unauthorized\) for lab\/debian-12-minimal/);
            assert.match(r.all, /write:packages/);
            assert.ok(!r.all.includes("a-wrong-password"), "the password was printed");
            const state = await env2.project.exportState("local");
            assert.ok(!(state.deployment.resources ?? []).some((x) => x.type === "pulumi-nodejs:dynamic/image-factory:OciPush"));
            assert.ok(!JSON.stringify(state).includes("a-wrong-password"));
            // The image itself is fine and published to the store: only the OCI step failed.
            assert.ok(fs.readdirSync(path.join(env2.storeRoot, "images", "debian-12-minimal")).some((v) => v.startsWith("v")));
        });

        it("the right password (factory:ghcrToken, a Pulumi secret) publishes", async () => {
            await env2.project.setConfig("local", "factory:ghcrToken", "the-right-one", { secret: true });
            await env2.project.upEvents("local", [], { GHCR_TOKEN: "" });
            const out = ((await env2.project.outputs("local")).images as Record<string, ImageOut>)["debian-12-minimal"];
            assert.equal(out.ociLayerDigest, `sha256:${out.sha256}`);
            const state = JSON.stringify(await env2.project.exportState("local"));
            assert.ok(!state.includes("the-right-one"), "the token is in the state in plain text");
        });
    });
});
