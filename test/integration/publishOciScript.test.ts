// scripts/ci/publish-oci.sh, the job of .github/workflows/publish-oci.yml, against a real registry with TLS and
// htpasswd auth on loopback: the qcow2 goes up oras-style, comes back byte for byte, and the step's outputs and
// summary say where; a refused token fails the job naming the registry's answer. The token reaches oras on stdin.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { orasBinary } from "../../lib/publish/oci";
import { startRegistry, type TestRegistry } from "../helpers/registry";
import { REPO_ROOT } from "../helpers/setup";

describe("scripts/ci/publish-oci.sh (the publish-oci workflow's job) against a TLS registry with auth", function () {
    this.timeout(180_000);
    let registry: TestRegistry;
    let dir: string;
    const auth = { user: "deevnet-ci", password: "publish-" + "token-0123456789" };

    before(async () => {
        registry = await startRegistry({ auth, tls: true });
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-publish-oci-"));
        fs.mkdirSync(path.join(dir, "dist"));
        await execa("qemu-img", ["create", "-q", "-f", "qcow2", path.join(dir, "dist", "image.qcow2"), "64M"]);
    });
    after(async () => {
        await registry?.stop();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    const run = (env: Record<string, string>) => {
        for (const f of ["summary", "output"]) fs.writeFileSync(path.join(dir, f), "");
        return execa("bash", [path.join(REPO_ROOT, "scripts", "ci", "publish-oci.sh")], {
            cwd: dir, reject: false, all: true,
            env: { SSL_CERT_FILE: registry.caBundle!, GITHUB_STEP_SUMMARY: path.join(dir, "summary"), GITHUB_OUTPUT: path.join(dir, "output"),
                RUNNER_TEMP: dir, QCOW2_PATH: path.join(dir, "dist", "image.qcow2"), GITHUB_ACTOR: auth.user, GITHUB_REPOSITORY: "deevnet/images",
                GITHUB_REPOSITORY_OWNER: "deevnet", GITHUB_SHA: "0123456789abcdef0123456789abcdef01234567", ...env },
        });
    };

    it("pushes, pulls back the same bytes, and writes the step outputs and the summary", async () => {
        const ref = `${registry.host}/deevnet/images:ci-test`;
        const r = await run({ IMAGE_REF: ref, GHCR_TOKEN: auth.password });
        assert.equal(r.exitCode, 0, r.all);
        const sha = crypto.createHash("sha256").update(fs.readFileSync(path.join(dir, "dist", "image.qcow2"))).digest("hex");
        assert.equal(fs.readFileSync(path.join(dir, "output"), "utf8"), `image_ref=${ref}\nsha256=${sha}\n`);
        assert.match(fs.readFileSync(path.join(dir, "summary"), "utf8"), new RegExp(`\\| reference \\| \`oci://${ref.replace(/[.]/g, "\\.")}\` \\|[\\s\\S]*bin/fetch oci://`));
        const pulled = path.join(dir, "pulled");
        await execa(orasBinary(), ["pull", "--username", auth.user, "--password-stdin", "-o", pulled, ref], { input: auth.password, env: { SSL_CERT_FILE: registry.caBundle! } });
        assert.equal(crypto.createHash("sha256").update(fs.readFileSync(path.join(pulled, "image.qcow2"))).digest("hex"), sha);
        const manifest = JSON.parse((await execa(orasBinary(), ["manifest", "fetch", "--username", auth.user, "--password-stdin", ref], { input: auth.password, env: { SSL_CERT_FILE: registry.caBundle! } })).stdout) as { artifactType: string; layers: Array<{ mediaType: string; annotations: Record<string, string> }>; annotations: Record<string, string> };
        assert.equal(manifest.artifactType, "application/vnd.deevnet.qcow2");
        assert.equal(manifest.layers[0].mediaType, "application/vnd.deevnet.qcow2");
        assert.equal(manifest.layers[0].annotations["org.opencontainers.image.title"], "image.qcow2");
        assert.equal(manifest.annotations["org.opencontainers.image.revision"], "0123456789abcdef0123456789abcdef01234567");
    });

    it("a refused token fails the job with the registry's answer; no token at all is named before anything is pushed", async () => {
        const wrong = await run({ IMAGE_REF: `${registry.host}/deevnet/images:ci-test`, GHCR_TOKEN: "wrong" });
        assert.notEqual(wrong.exitCode, 0);
        assert.match(wrong.all ?? "", /401|unauthorized|Unauthorized/);
        const none = await run({ IMAGE_REF: `${registry.host}/deevnet/images:ci-test` });
        assert.notEqual(none.exitCode, 0);
        assert.match(none.all ?? "", /GHCR_TOKEN is empty/);
    });

    it("without image_ref the target is ghcr.io/<owner>/<repo>:latest (or OCI_REGISTRY's)", async () => {
        // No network here: the login to the default registry fails, but the step output already names the reference.
        const r = await run({ GHCR_TOKEN: "x", OCI_REGISTRY: "" });
        assert.notEqual(r.exitCode, 0);
        assert.match(fs.readFileSync(path.join(dir, "output"), "utf8"), /^image_ref=ghcr\.io\/deevnet\/images:latest$/m);
        const other = await run({ GHCR_TOKEN: "x", OCI_REGISTRY: "registry.invalid:5000" });
        assert.notEqual(other.exitCode, 0);
        assert.match(fs.readFileSync(path.join(dir, "output"), "utf8"), /^image_ref=registry\.invalid:5000\/deevnet\/images:latest$/m);
    });
});
