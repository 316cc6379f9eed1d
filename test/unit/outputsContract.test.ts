// The outputs contract (lib/contract.ts, and schemas/outputs.schema.json generated from it) accepts the shapes index.ts exports (built, reused, with and
// without Proxmox) and rejects the mistakes a consumer would trip over later; consumer files are all-or-nothing.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { outputsJsonSchemaText, stackOutputsSchema } from "../../lib/contract";
import { checkOutputs, consumerDocument, consumerPaths, OUTPUTS_SCHEMA_FILE, writeConsumerFiles } from "../../lib/outputsContract";

const SHA = "86dd87b347204e5ceacd053974ad1af226e63a051bd0ae0cae7abd2c8b38167f";
const DIGEST = `sha256:${SHA.replace(/^8/, "9")}`;

function builtImage(): Record<string, unknown> {
    return {
        pass: 1, version: "v2026.11.25", sha256: SHA, size: 147783680, buildKey: "37d64bdfb55dc8c09c9687b716b87ee933a7ca85596fce8bc0897390b5113661",
        qcow2Url: "http://127.0.0.1:8089/images/debian-12-minimal/v2026.11.25/debian-12-minimal-v2026.11.25.qcow2",
        sha256Url: "http://127.0.0.1:8089/images/debian-12-minimal/v2026.11.25/debian-12-minimal-v2026.11.25.qcow2.sha256",
        storePath: "/srv/artifacts/images/debian-12-minimal/v2026.11.25/debian-12-minimal-v2026.11.25.qcow2",
        buildInfo: { image: "debian-12-minimal", version: "v2026.11.25", buildKey: "k", buildTime: "2026-11-25T19:51:26.995Z", git: { commit: "b98d33d" }, base: { id: "debian:bookworm", sha256: SHA }, recipe: {}, tools: {} },
        ociRef: "oci://127.0.0.1:5000/image-factory/debian-12-minimal:v2026.11.25", ociDigest: DIGEST, ociLayerDigest: `sha256:${SHA}`, ociProvenanceDigest: null,
        releaseUrl: null, releaseAssetUrl: null, releaseSha256Url: null, toolsJson: null,
        proxmox: { node: "pve1", vmid: 9001, name: "if-debian-12-minimal-v2026-11-25" },
        validation: { passed: true, checks: ["pass qcow2.readable", "pass sshd.enabled"], evidencePath: "/srv/evidence/x/validate" },
        proxmoxTemplates: [{ image: "debian-12-minimal", version: "v2026.11.25", vmid: 9001, name: "if-debian-12-minimal-v2026-11-25", sha256: SHA }],
    };
}

function outputs(): Record<string, unknown> {
    return {
        schemaVersion: 2, lab: "dvntm", maxPass: 2,
        artifactStore: { root: "/srv/artifacts", baseUrl: "http://127.0.0.1:8089", layout: "images/<name>/<version>/<name>-<version>.qcow2" },
        passes: { "1": { images: ["debian-12-minimal"] }, "2": { images: ["debian-12-platform"] } },
        images: {
            "debian-12-minimal": builtImage(),
            "debian-12-platform": { pass: 2, reusedFrom: "organization/image-factory/dvnt", version: "v2026.11.24.2", sha256: SHA, size: 5, qcow2Url: null, proxmox: null, proxmoxTemplates: null },
        },
        baseImageCache: {},
        proxmox: { node: "pve1", templates: { "debian-12-minimal": [] } },
    };
}

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- mutating arbitrary paths of a JSON fixture

describe("outputs contract (schemas/outputs.schema.json)", () => {
    it("accepts a built image, a reused image and Proxmox templates", () => {
        const r = checkOutputs(outputs());
        assert.deepEqual(r.problems, []);
        assert.equal(r.valid, true);
    });

    const broken: Array<[string, (d: Doc) => void, RegExp]> = [
        ["another schemaVersion", (d) => { d.schemaVersion = 3; }, /^\/schemaVersion must be equal to constant/],
        ["an upper-case sha256", (d) => { d.images["debian-12-minimal"].sha256 = SHA.toUpperCase(); }, /^\/images\/debian-12-minimal/],
        ["a version outside vYYYY.MM.DD(.N)", (d) => { d.images["debian-12-minimal"].version = "2026-11-25"; }, /^\/images\/debian-12-minimal/],
        ["an unknown top-level output", (d) => { d.OUTPUTS_SCHEMA_VERSION = 1; }, /must NOT have additional properties .*OUTPUTS_SCHEMA_VERSION/],
        ["a failed validation", (d) => { d.images["debian-12-minimal"].validation.passed = false; }, /^\/images\/debian-12-minimal/],
        ["a pass that does not exist", (d) => { d.passes["4"] = { images: [] }; }, /^\/passes/],
        ["a missing image field", (d) => { delete d.images["debian-12-minimal"].buildKey; }, /^\/images\/debian-12-minimal/],
    ];
    for (const [what, mutate, problem] of broken) {
        it(`rejects ${what}`, () => {
            const d = outputs() as Doc;
            mutate(d);
            const r = checkOutputs(d);
            assert.equal(r.valid, false);
            assert.ok(r.problems.some((p) => problem.test(p)), r.problems.join("\n"));
            // The zod schema the file is generated from decides the same.
            assert.equal(stackOutputsSchema.safeParse(d).success, false);
        });
    }

    it("accepts an image built from nothing else (a NoCloud seed ISO: its build info's base is null)", () => {
        const d = outputs() as Doc;
        d.images["debian-12-minimal"].format = "iso";
        d.images["debian-12-minimal"].buildInfo.base = null;
        assert.deepEqual(checkOutputs(d).problems, []);
        assert.equal(stackOutputsSchema.safeParse(d).success, true);
    });

    it("is generated from lib/contract.ts: the file is not stale (npm run schema rewrites it)", () => {
        assert.equal(fs.readFileSync(OUTPUTS_SCHEMA_FILE, "utf8"), outputsJsonSchemaText(),
            "schemas/outputs.schema.json differs from lib/contract.ts: run `npm run schema` and commit the file");
        assert.equal(stackOutputsSchema.safeParse(outputs()).success, true);
    });

    it("writes the same document for Terraform and Ansible, and nothing when the outputs break the contract", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-consumers-"));
        try {
            const files = consumerPaths(path.join(dir, "tf"), path.join(dir, "ansible"));
            assert.equal(files.ansible, path.join(dir, "ansible", "group_vars", "all", "image_factory.json"));
            await writeConsumerFiles(outputs(), files);
            const tf = fs.readFileSync(files.terraform, "utf8");
            assert.equal(tf, fs.readFileSync(files.ansible, "utf8"));
            assert.equal(tf, consumerDocument(outputs()));
            assert.deepEqual(JSON.parse(tf), { image_factory: outputs() });

            const bad = outputs() as Doc;
            bad.schemaVersion = 3;
            const other = consumerPaths(path.join(dir, "tf2"), path.join(dir, "ansible2"));
            await assert.rejects(writeConsumerFiles(bad, other), /do not match schemas\/outputs.schema.json:\n {2}\/schemaVersion .*bump schemaVersion/s);
            assert.equal(fs.existsSync(other.terraform) || fs.existsSync(other.ansible), false);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
