// The PR comment of a preview (lib/previewSummary.ts): per image, rebuild or not by build key, the version it would
// get, the targets that change; short whatever the plan's size. The rehearsal checks it on the engine's real JSON.
import { strict as assert } from "node:assert";
import { partOf, previewMarkdown, summarizePreview, type PreviewDigest } from "../../lib/previewSummary";

const IMAGES = ["debian-12-minimal", "debian-12-minimal-pve", "debian-12-platform"];
const urn = (name: string, type = "pulumi-nodejs:dynamic/image-factory:ImageBuild") => `urn:pulumi:dvnt::image-factory::image-factory:pass:BootstrapPass$image-factory:image:Image$${type}::${name}`;

describe("lib/previewSummary: the PR comment of a preview", () => {
    it("names the image and part of a resource, the longest image name first", () => {
        assert.deepEqual(partOf("debian-12-minimal-pve-build", IMAGES), { image: "debian-12-minimal-pve", part: "build" });
        assert.deepEqual(partOf("debian-12-minimal-oci-push", IMAGES), { image: "debian-12-minimal", part: "oci" });
        assert.deepEqual(partOf("debian-12-platform-proxmox-template", IMAGES), { image: "debian-12-platform", part: "proxmox" });
        assert.deepEqual(partOf("debian-12-platform-release-upload", IMAGES), { image: "debian-12-platform", part: "release" });
        assert.deepEqual(partOf("debian-12-minimal-validation", IMAGES), { image: "debian-12-minimal", part: "gate" });
        assert.equal(partOf("base-debian-bookworm-fetch", IMAGES), undefined);
    });

    it("a new build key rebuilds with the run's version (or a date version at up); an unchanged one keeps its version; targets that change are listed", () => {
        const doc: PreviewDigest = {
            changeSummary: { same: 20, replace: 6, create: 1 },
            steps: [
                { op: "replace", urn: urn("debian-12-platform-build"), oldState: { inputs: { buildKey: "a".repeat(64) }, outputs: { version: "v2026.12.06" } }, newState: { inputs: { buildKey: "b".repeat(64) } } },
                { op: "replace", urn: urn("debian-12-platform-validation", "pulumi-nodejs:dynamic/image-factory:ImageValidation") },
                { op: "replace", urn: urn("debian-12-platform-oci-push") },
                { op: "update", urn: urn("debian-12-minimal-oci-push"), diffReasons: ["tags"] },
                { op: "create", urn: urn("debian-12-platform-proxmox-template", "proxmoxve:index/vmLegacy:VmLegacy") },
                { op: "same", urn: urn("debian-12-minimal-build"), oldState: { inputs: { buildKey: "c".repeat(64) }, outputs: { version: "v2026.12.06" } }, newState: { inputs: { buildKey: "c".repeat(64) } } },
                { op: "same", urn: urn("debian-12-minimal-oci-push") },
            ],
        };
        const lines = summarizePreview(doc, IMAGES);
        assert.deepEqual(lines.find((l) => l.image === "debian-12-platform"), {
            image: "debian-12-platform", build: "rebuilds", buildKey: "b".repeat(64), previousBuildKey: "a".repeat(64), version: "a new date version, given at up", changes: ["gate", "oci", "proxmox"] });
        assert.deepEqual(lines.find((l) => l.image === "debian-12-minimal"), { image: "debian-12-minimal", build: "unchanged", buildKey: "c".repeat(64), version: "v2026.12.06", changes: ["oci (tags)"] },
            "a change the provider names the properties of says which");
        assert.equal(lines.find((l) => l.image === "debian-12-minimal-pve")?.build, "none");
        assert.equal(summarizePreview(doc, IMAGES, "v2026.12.07").find((l) => l.image === "debian-12-platform")?.version, "v2026.12.07", "a tag's run gives the tag");
        const md = previewMarkdown("dvnt", doc, lines);
        assert.match(md, /^### `pulumi preview` of dvnt: 20 same, 6 replace, 1 create\n/);
        assert.match(md, /\| debian-12-platform \| \*\*rebuilds\*\* `bbbbbbbbbbbb` \(was `aaaaaaaaaaaa`\) \| a new date version, given at up \| gate, oci, proxmox \|/);
        assert.match(md, /\| debian-12-minimal \| unchanged `cccccccccccc` \| v2026\.12\.06 \| oci \(tags\) \|/);
    });

    it("a failed preview says so and lists the errors; a huge plan is cut to stay a comment", () => {
        const failed = previewMarkdown("dvntm", { diagnostics: [{ severity: "error", message: "factory:reuse: dvnt has no image x\nmore" }, { severity: "info", message: "noise" }] }, [], { ok: false });
        assert.match(failed, /: \*\*failed\*\*/);
        assert.match(failed, /Errors:\n- factory:reuse: dvnt has no image x\n/);
        assert.doesNotMatch(failed, /noise|more/);
        const many = Array.from({ length: 3000 }, (_, i) => `image-${i}`);
        const big = previewMarkdown("dvnt", {}, summarizePreview({}, many));
        assert.ok(big.length < 61_000, String(big.length));
        assert.match(big, /\(cut: the job's log has the whole preview\)\n$/);
    });
});
