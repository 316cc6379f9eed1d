// GitHub Actions workflows: every file passes actionlint (built from Go modules by tools/build.sh; it also checks the
// inputs of pulumi/actions), the reusable OCI publishing workflow keeps the contract its callers rely on, and the
// preview/up workflows run the right stacks with the policy pack.
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

    type Step = { uses?: string; with?: Record<string, unknown>; run?: string; env?: Record<string, string> };
    type Workflow = { on: Record<string, any>; jobs: Record<string, { "runs-on": unknown; strategy?: { matrix: Record<string, unknown> }; steps: Step[]; env?: Record<string, string> }> }; // eslint-disable-line @typescript-eslint/no-explicit-any -- trigger shapes vary per event
    const load = (f: string) => parse(fs.readFileSync(path.join(WORKFLOWS, f), "utf8")) as Workflow;

    it("preview.yml: pull requests, one preview per lab stack on its builder, policy pack, short PR comment", () => {
        const wf = load("preview.yml");
        assert.ok(wf.on.pull_request);
        const job = wf.jobs.preview;
        assert.deepEqual(job.strategy?.matrix.stack, ["dvnt", "dvntm"]);
        assert.deepEqual(job["runs-on"], ["self-hosted", "linux", "${{ matrix.stack }}"]);
        const action = job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"));
        assert.equal(action?.with?.command, "preview");
        assert.equal(action?.with?.["stack-name"], "${{ matrix.stack }}");
        assert.equal(action?.with?.policyPacks, "policy");
        assert.equal(action?.with?.["comment-on-pr"], true);
        assert.equal(action?.with?.["suppress-outputs"], true);
        assert.match(job.steps.map((s) => s.run ?? "").join("\n"), /npm ci .*--prefix policy/);
        assert.equal(job.env?.PULUMI_CONFIG_PASSPHRASE, "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}");
    });

    it("up.yml: release tags vYYYY.MM.DD(.N) only, dvnt before dvntm, tokens in env not argv, version from the tag", () => {
        const wf = load("up.yml");
        // GitHub's filter globs: [0-9] a digit, * anything but '/', other characters literal.
        const globs = (wf.on.push.tags as string[]).map((g) => new RegExp(`^${g.replace(/\./g, "\\.").replace(/\*/g, "[^/]*")}$`));
        const matches = (tag: string) => globs.some((g) => g.test(tag));
        for (const tag of ["v2026.11.25", "v2026.11.25.2"]) assert.ok(matches(tag), tag);
        for (const tag of ["v1.2.3", "latest", "2026.11.25", "v2026.1.25"]) assert.ok(!matches(tag), tag);
        const job = wf.jobs.up;
        assert.match(String(job.strategy?.matrix.stack), /\["dvnt","dvntm"\]/);
        assert.equal((job.strategy as unknown as { "max-parallel": number })["max-parallel"], 1);
        const run = job.steps.map((s) => s.run ?? "").join("\n");
        assert.match(run, /bash scripts\/setup.sh/);
        assert.match(run, /--config "factory:version=\$TAG"/);
        assert.doesNotMatch(run, /secrets\.|TOKEN/, "tokens reach pulumi through env, never a command line");
        for (const name of ["GITHUB_TOKEN", "GHCR_TOKEN", "PROXMOX_VE_API_TOKEN"]) assert.match(job.env?.[name] ?? "", /secrets/);
    });

    it("up.yml: the release metadata written on the runner is committed back to the default branch after pulumi up", () => {
        const steps = load("up.yml").jobs.up.steps;
        const up = steps.findIndex((s) => /pulumi up "\$\{args\[@\]\}"/.test(s.run ?? ""));
        const commit = steps.findIndex((s) => /git add -- "\$\{paths\[@\]\}"/.test(s.run ?? ""));
        assert.ok(up >= 0 && commit > up, "a commit step must follow pulumi up");
        const run = steps[commit].run ?? "";
        assert.match(run, /paths=\(releases manifests\/tools\.json docs\/releases\.md\)/);
        assert.match(run, /git pull --rebase origin "\$BRANCH" && git push origin "HEAD:\$BRANCH"/);
        assert.match(run, /git diff --cached --quiet/, "no empty commits");
        assert.doesNotMatch(run, /--force|-f /, "never a forced push");
    });
});
