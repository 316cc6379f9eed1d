// GitHub Actions workflows: every file passes actionlint (built from Go modules by tools/build.sh), and the
// reusable OCI publishing workflow keeps the contract its callers rely on.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { REPO_ROOT } from "../helpers/setup";

const WORKFLOWS = path.join(REPO_ROOT, ".github", "workflows");

describe(".github/workflows", () => {
    it("every workflow passes actionlint", async () => {
        const files = fs.readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(WORKFLOWS, f));
        assert.ok(files.length >= 1);
        const r = await execa("actionlint", ["-no-color", ...files], { reject: false, cwd: REPO_ROOT });
        assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    });

    it("actionlint does fail on a broken workflow (the check can fail)", async () => {
        const bad = path.join(REPO_ROOT, ".cache", "bad-workflow.yml");
        fs.mkdirSync(path.dirname(bad), { recursive: true });
        fs.writeFileSync(bad, "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n");
        try {
            const r = await execa("actionlint", ["-no-color", bad], { reject: false });
            assert.notEqual(r.exitCode, 0);
        } finally {
            fs.rmSync(bad, { force: true });
        }
    });

    it("publish-oci.yml: reusable, manual, oras 1.3.0, qcow2_path/artifact_name/image_ref inputs, pull-polling, summary", () => {
        const wf = parse(fs.readFileSync(path.join(WORKFLOWS, "publish-oci.yml"), "utf8")) as {
            on: Record<string, { inputs: Record<string, { default?: string }> }>;
            jobs: { publish: { steps: Array<{ uses?: string; with?: Record<string, string>; run?: string; name?: string }> } };
        };
        assert.ok(wf.on.workflow_dispatch && wf.on.workflow_call);
        for (const trigger of ["workflow_dispatch", "workflow_call"]) {
            assert.deepEqual(Object.keys(wf.on[trigger].inputs).slice(0, 3), ["qcow2_path", "artifact_name", "image_ref"]);
            assert.equal(wf.on[trigger].inputs.qcow2_path.default, "dist/image.qcow2");
        }
        const steps = wf.jobs.publish.steps;
        const setup = steps.find((s) => s.uses?.startsWith("oras-project/setup-oras@"));
        assert.equal(setup?.with?.version, "1.3.0");
        const run = steps.map((s) => s.run ?? "").join("\n");
        assert.match(run, /--password-stdin/);
        assert.match(run, /--artifact-type "\$MEDIA_TYPE"/);
        assert.match(run, /org\.opencontainers\.image\.title=\$name/);
        assert.match(run, /oras pull "\$IMAGE_REF"/);
        assert.match(run, /GITHUB_STEP_SUMMARY/);
        assert.doesNotMatch(run, /-p "\$|--password "/, "the token must not be passed in argv");
    });
});
