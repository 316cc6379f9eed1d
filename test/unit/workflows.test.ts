// GitHub Actions workflows: every file passes actionlint (built from Go modules by tools/build.sh; it also checks the
// inputs of pulumi/actions), the reusable OCI publishing workflow keeps the contract its callers rely on, and the
// preview/up workflows run the right stacks with the policy pack.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { RELEASE_METADATA_PATHS } from "../../lib/git";
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

    type Step = { uses?: string; with?: Record<string, unknown>; run?: string; env?: Record<string, string>; id?: string; if?: string };
    type Job = { "runs-on"?: unknown; uses?: string; with?: Record<string, unknown>; needs?: string | string[]; if?: string; strategy?: { matrix: Record<string, unknown> }; steps?: Step[]; env?: Record<string, string> };
    type Workflow = { on: Record<string, { inputs?: Record<string, { default?: string }> } | null>; jobs: Record<string, Job> };
    const load = (f: string) => parse(fs.readFileSync(path.join(WORKFLOWS, f), "utf8")) as Workflow;
    const script = (name: string) => fs.readFileSync(path.join(REPO_ROOT, "scripts", "ci", name), "utf8");

    /** Steps that run only on GitHub (nothing of ours): checking out, artifacts, setting up oras, the PR comment call. */
    const GITHUB_ONLY = /^(actions\/checkout|actions\/upload-artifact|actions\/download-artifact|oras-project\/setup-oras|actions\/github-script)@v\d+$/;

    it("every job is thin: checkout, one `bash scripts/ci/<job>.sh` with its environment, and only GitHub-only steps besides", () => {
        const seen: string[] = [];
        for (const file of fs.readdirSync(WORKFLOWS).filter((f) => f.endsWith(".yml"))) {
            for (const [id, job] of Object.entries(load(file).jobs)) {
                if (job.uses) continue; // a call of a reusable workflow: that file's jobs are checked themselves
                const steps = job.steps ?? [];
                assert.match(steps[0]?.uses ?? "", /^actions\/checkout@/, `${file}/${id}: checks out first`);
                const runs = steps.filter((s) => s.run !== undefined);
                assert.equal(runs.length, 1, `${file}/${id}: one run step, got ${runs.length}`);
                assert.match(runs[0].run ?? "", /^bash scripts\/ci\/[a-z-]+\.sh$/, `${file}/${id}: the run step calls one script and nothing else`);
                for (const s of steps.filter((x) => x.run === undefined)) assert.match(s.uses ?? "", GITHUB_ONLY, `${file}/${id}: ${s.uses} is not a GitHub-only step`);
                seen.push(`${file}:${(runs[0].run ?? "").replace("bash ", "")}`);
            }
        }
        assert.deepEqual(seen.sort(), ["preview.yml:scripts/ci/preview.sh", "publish-oci.yml:scripts/ci/publish-oci.sh", "up-stack.yml:scripts/ci/build-cache.sh",
            "up-stack.yml:scripts/ci/cache-plan.sh", "up-stack.yml:scripts/ci/up.sh"]);
    });

    it("every CI script parses (bash -n)", async () => {
        for (const f of fs.readdirSync(path.join(REPO_ROOT, "scripts", "ci"))) {
            const r = await execa("bash", ["-n", path.join(REPO_ROOT, "scripts", "ci", f)], { reject: false });
            assert.equal(r.exitCode, 0, `${f}: ${r.stderr}`);
        }
        // The check can fail: an apostrophe inside \${VAR:?message} opens a quote that never closes.
        const bad = await execa("bash", ["-n"], { input: "x=${Y:?the repository's branch}\n", reject: false });
        assert.notEqual(bad.exitCode, 0);
    });

    /** Upper-case environment names a shell script reads ($NAME, ${NAME…}), less what it assigns itself. */
    function envReadBy(text: string): Set<string> {
        const code = text.split("\n").filter((l) => !/^\s*#/.test(l)).join("\n");
        const read = new Set([...code.matchAll(/\$\{?([A-Z][A-Z0-9_]+)/g)].map((m) => m[1]));
        for (const m of code.matchAll(/(?:^|[\s;(])(?:export\s+)?([A-Z][A-Z0-9_]+)=/gm)) if (!/\$\{?/.test(m[0])) read.delete(m[1]);
        return read;
    }
    /** What Actions sets in every job, what bash itself has, and what scripts/env.sh derives. */
    const GIVEN = (name: string) => (/^(GITHUB_|RUNNER_)/.test(name) && name !== "GITHUB_TOKEN") || ["CI", "HOME", "PATH", "PIPESTATUS", "SECONDS", "BASH_SOURCE", "PWD"].includes(name) ||
        [...fs.readFileSync(path.join(REPO_ROOT, "scripts", "env.sh"), "utf8").matchAll(/^export ([A-Z_]+)=/gm)].some((m) => m[1] === name && !["PULUMI_BACKEND_URL"].includes(name));
    /**
     * What the program reads from the environment in a lab run: the targets' tokens (components/context.ts,
     * envSecret) and the registry host (lib/config.ts). Evidence signing (EVIDENCE_*) follows EVIDENCE_GPG_KEY, which up.sh reads. A preview
     * publishes nothing: it needs the registry host and the Proxmox token (the provider reads the node), not the
     * publishing tokens, which a pull request's job is not given.
     */
    function programEnv(job: "preview" | "up" = "up"): string[] {
        const ctx = fs.readFileSync(path.join(REPO_ROOT, "components", "context.ts"), "utf8");
        const names = [...ctx.matchAll(/envSecret\("([A-Z_]+)"\)|process\.env\.(GHCR_[A-Z_]+)/g)].map((m) => m[1] ?? m[2]).filter((n) => !n.startsWith("EVIDENCE_"));
        const config = fs.readFileSync(path.join(REPO_ROOT, "lib", "config.ts"), "utf8");
        const all = [...new Set([...names, ...[...config.matchAll(/env\.([A-Z_]+)/g)].map((m) => m[1])])];
        return job === "up" ? all : all.filter((n) => ["OCI_REGISTRY", "PROXMOX_VE_API_TOKEN"].includes(n));
    }

    /**
     * The part of lib.sh a script runs: its top-level lines and the ci_* functions the script calls, and those they call
     * (a job that never touches the backend is not given the backend's secrets).
     */
    function libUsedBy(lib: string, text: string): string {
        const fns = new Map<string, string>();
        for (const m of lib.matchAll(/^(ci_[a-z_]+)\(\) \{([\s\S]*?)^\}$|^(ci_[a-z_]+)\(\) \{(.*)\}$/gm)) fns.set(m[1] ?? m[3], m[2] ?? m[4]);
        const top = lib.replace(/^(ci_[a-z_]+)\(\) \{[\s\S]*?^\}$|^ci_[a-z_]+\(\) \{.*\}$/gm, "");
        const used = new Set<string>();
        const visit = (code: string) => {
            for (const [name, body] of fns) if (!used.has(name) && new RegExp(`\\b${name}\\b`).test(code)) { used.add(name); visit(body); }
        };
        visit(text);
        return [top, ...[...used].map((n) => fns.get(n) as string)].join("\n");
    }

    it("every environment name a job's script (and, for preview and up, the program) reads is passed by its workflow", () => {
        // The check follows lib.sh's functions: up.sh reaches the backend's secrets through ci_lab_job, cache-plan.sh does not.
        assert.ok(envReadBy(libUsedBy(script("lib.sh"), script("up.sh"))).has("PULUMI_CONFIG_PASSPHRASE"));
        assert.ok(!envReadBy(libUsedBy(script("lib.sh"), script("cache-plan.sh"))).has("PULUMI_CONFIG_PASSPHRASE"));
        assert.ok(programEnv().includes("GITHUB_TOKEN") && programEnv().includes("PROXMOX_VE_API_TOKEN") && programEnv().includes("OCI_REGISTRY"), programEnv().join(" "));
        const lib = script("lib.sh");
        for (const [file, job, name, program] of [["preview.yml", "preview", "preview.sh", true], ["up-stack.yml", "up", "up.sh", true], ["publish-oci.yml", "publish", "publish-oci.sh", false],
            ["up-stack.yml", "plan", "cache-plan.sh", false], ["up-stack.yml", "build-cache", "build-cache.sh", false]] as const) {
            const j = load(file).jobs[job];
            const step = (j.steps ?? []).find((s) => s.run === `bash scripts/ci/${name}`) as Step;
            const passed = new Set(Object.keys({ ...j.env, ...step.env }));
            const wanted = [...envReadBy(script(name)), ...(name === "publish-oci.sh" ? [] : envReadBy(libUsedBy(lib, script(name)))), ...(program ? programEnv(job === "preview" ? "preview" : "up") : [])].filter((n) => !GIVEN(n));
            const missing = [...new Set(wanted)].filter((n) => !passed.has(n));
            assert.deepEqual(missing, [], `${file}: ${name} reads ${missing.join(", ")} but the workflow does not pass it`);
            for (const [k, v] of Object.entries(step.env ?? {})) if (/TOKEN|PASSPHRASE|SECRET/.test(k)) assert.match(v, /secrets/, `${file}: ${k} comes from a secret`);
        }
        // The check can fail: a script reading a name no workflow passes is found.
        assert.ok(envReadBy('x=${NOT_PASSED_ANYWHERE:-1}\necho "$STACK"').has("NOT_PASSED_ANYWHERE"));
        assert.ok(!envReadBy("MAX=3\necho $MAX").has("MAX"), "a name the script assigns is its own");
    });

    it("publish-oci.yml: reusable and manual, qcow2_path/artifact_name/image_ref inputs; the script logs in on stdin, pushes oras-style, polls the pull", () => {
        const wf = load("publish-oci.yml");
        for (const trigger of ["workflow_dispatch", "workflow_call"]) {
            assert.deepEqual(Object.keys(wf.on[trigger]?.inputs ?? {}).slice(0, 3), ["qcow2_path", "artifact_name", "image_ref"]);
            assert.equal(wf.on[trigger]?.inputs?.qcow2_path.default, "dist/image.qcow2");
        }
        assert.equal(wf.jobs.publish.steps?.find((s) => s.uses?.startsWith("oras-project/setup-oras@"))?.with?.version, "1.3.0");
        const run = script("publish-oci.sh");
        assert.match(run, /--password-stdin/);
        assert.match(run, /--artifact-type "\$media_type"/);
        assert.match(run, /org\.opencontainers\.image\.title=\$name/);
        assert.match(run, /oras pull "\$ref"/);
        assert.match(run, /\$\{OCI_REGISTRY:-ghcr\.io\}/, "GHCR unless OCI_REGISTRY names another");
        assert.doesNotMatch(run, /oras [^\n]*(-p|--password) /, "the token must not be passed in argv");
    });

    it("preview.yml: pull requests, one preview per lab stack on its builder; the script's comment is posted by one GitHub-only step", () => {
        const wf = load("preview.yml");
        assert.ok(wf.on.pull_request !== undefined);
        const job = wf.jobs.preview;
        assert.deepEqual(job.strategy?.matrix.stack, ["dvnt", "dvntm"]);
        assert.deepEqual(job["runs-on"], ["self-hosted", "linux", "${{ matrix.stack }}"]);
        assert.equal(job.steps?.some((s) => s.uses?.startsWith("pulumi/actions@")), false, "the preview runs our engine and plugin, not a downloaded CLI");
        const comment = job.steps?.find((s) => s.uses?.startsWith("actions/github-script@"));
        assert.match(comment?.env?.COMMENT_FILE ?? "", /steps\.preview\.outputs\.comment_file/);
        const run = script("preview.sh");
        assert.match(run, /pulumi preview --stack "\$STACK" --config-file "\$ci_config" --policy-pack policy --json --show-sames/);
        assert.match(run, /ci_output comment_file/);
    });

    it("up.yml: release tags vYYYY.MM.DD(.N) only; dvnt, then dvntm only after dvnt succeeded; each one up-stack.yml job", () => {
        const wf = load("up.yml");
        // GitHub's filter globs: [0-9] a digit, * anything but '/', other characters literal.
        const globs = ((wf.on.push as unknown as { tags: string[] }).tags).map((g) => new RegExp(`^${g.replace(/\./g, "\\.").replace(/\*/g, "[^/]*")}$`));
        const matches = (tag: string) => globs.some((g) => g.test(tag));
        for (const tag of ["v2026.11.25", "v2026.11.25.2"]) assert.ok(matches(tag), tag);
        for (const tag of ["v1.2.3", "latest", "2026.11.25", "v2026.1.25"]) assert.ok(!matches(tag), tag);
        assert.deepEqual(Object.keys(wf.jobs), ["dvnt", "dvntm"]);
        for (const [stack, job] of Object.entries(wf.jobs)) {
            assert.equal(job.uses, "./.github/workflows/up-stack.yml");
            assert.equal(job.with?.stack, stack);
        }
        assert.equal(wf.jobs.dvntm.needs, "dvnt");
        assert.match(wf.jobs.dvntm.if ?? "", /needs\.dvnt\.result == 'success' \|\| needs\.dvnt\.result == 'skipped'/);
        const up = load("up-stack.yml").jobs.up;
        assert.deepEqual(up["runs-on"], ["self-hosted", "linux", "${{ inputs.stack }}"]);
        const env = (up.steps ?? []).find((s) => s.run)?.env ?? {};
        for (const name of ["GITHUB_TOKEN", "GHCR_TOKEN", "PROXMOX_VE_API_TOKEN", "PULUMI_CONFIG_PASSPHRASE"]) assert.match(env[name] ?? "", /secrets/);
    });

    it("up-stack.yml: a build-cache job per image the stack builds (a matrix from the plan job) before the up job, which runs whatever the matrix did", () => {
        const wf = load("up-stack.yml");
        type Job = { needs?: string | string[]; if?: string; outputs?: Record<string, string>; strategy?: { "fail-fast"?: boolean; matrix?: Record<string, string> }; "runs-on"?: string[] };
        const jobs = wf.jobs as unknown as Record<string, Job>;
        assert.deepEqual(Object.keys(jobs), ["plan", "build-cache", "up"]);
        assert.equal(jobs.plan.outputs?.images, "${{ steps.plan.outputs.images }}");
        assert.equal(jobs["build-cache"].needs, "plan");
        assert.equal(jobs["build-cache"].strategy?.matrix?.image, "${{ fromJSON(needs.plan.outputs.images) }}");
        assert.equal(jobs["build-cache"].strategy?.["fail-fast"], false, "one image failing must not cancel the others");
        assert.match(jobs["build-cache"].if ?? "", /needs\.plan\.outputs\.images != '\[\]'/);
        for (const j of ["plan", "build-cache", "up"]) assert.deepEqual(jobs[j]["runs-on"], ["self-hosted", "linux", "${{ inputs.stack }}"], j);
        assert.deepEqual(jobs.up.needs, ["plan", "build-cache"]);
        assert.match(jobs.up.if ?? "", /always\(\) && needs\.plan\.result == 'success'/);
        const build = script("build-cache.sh");
        assert.match(build, /make build\.cache IMAGE="\$IMAGE" STACK="\$STACK" \$\{tag:\+VERSION="\$tag"\}/, "the matrix builds with the tag's version, as up.sh pins it");
        assert.match(script("up.sh"), /ci_config_set factory:version "\$tag"/);
    });

    it("up.sh: the run's values go to a copy of the stack file; release metadata is committed onto the default branch once, never forced", () => {
        const run = script("up.sh");
        const lib = script("lib.sh");
        assert.doesNotMatch(run, /pulumi up [^\n]*--config /, "pulumi up --config would save into the tracked stack file");
        assert.match(run, /pulumi up --stack "\$STACK" --config-file "\$ci_config"/);
        // The paths the script commits are the ones lib/git.ts leaves out of a dirty tree: one list, in two languages.
        assert.ok(lib.includes(`ci_metadata_paths=(${RELEASE_METADATA_PATHS.join(" ")})`), "ci_metadata_paths must equal RELEASE_METADATA_PATHS");
        assert.deepEqual([...RELEASE_METADATA_PATHS], ["releases", "manifests", "docs/releases.md"]);
        assert.match(lib, /git commit-tree "\$tree" -p "\$ci_metadata_base"/);
        assert.match(lib, /if \[\[ "\$tree" == "\$\(git rev-parse "\$ci_metadata_base\^\{tree\}"\)" \]\]/, "no empty commits");
        assert.doesNotMatch(run + lib, /--force|push -f /, "never a forced push");
        assert.ok(run.indexOf("ci_metadata_pull") < run.indexOf("pulumi up --stack") && run.indexOf("bin/lab-check.ts") < run.indexOf("pulumi up --stack"),
            "the branch's metadata and the checks come before the builds");
    });
});
