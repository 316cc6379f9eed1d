// GitHub Actions, as far as our jobs can tell, on this machine: a bare git repository as `origin` whose pre-receive
// hook refuses what branch protection refuses (a non-fast-forward push, deleting a branch), and a job runner that
// does what a self-hosted runner does for one job of ours: a fresh clone checked out at the event's commit, the
// environment Actions sets (GITHUB_*, RUNNER_TEMP, the summary and output files), the step's `env:` evaluated from the
// workflow file itself with the repository's variables and secrets, and then the one script the step runs.
// The GitHub-only steps (checkout's own code, artifact upload, the comment API call) are not run.
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { REPO_ROOT } from "./setup";

const HOOK = `#!/bin/sh
# Branch protection as GitHub applies it to the default branch: no force push (non-fast-forward), no deletion.
zero=0000000000000000000000000000000000000000
while read old new ref; do
  case "$ref" in refs/heads/*) ;; *) continue ;; esac
  if [ "$new" = "$zero" ]; then echo "GH006: Protected branch update failed for $ref: cannot delete this protected branch"; exit 1; fi
  if [ "$old" != "$zero" ] && ! git merge-base --is-ancestor "$old" "$new"; then
    echo "GH006: Protected branch update failed for $ref: cannot force-push to this branch"; exit 1
  fi
done
exit 0
`;

const GIT_ID = { GIT_AUTHOR_NAME: "lab operator", GIT_AUTHOR_EMAIL: "operator@lab.example", GIT_COMMITTER_NAME: "lab operator", GIT_COMMITTER_EMAIL: "operator@lab.example" };

export interface Origin {
    /** The bare repository (what `origin` is to every clone). */
    bare: string;
    /** The operator's own clone: commits, branches and tags are made here and pushed. */
    work: string;
    git(args: string[], opts?: { reject?: boolean }): Promise<execa.ExecaReturnValue>;
    /** Commits on origin's main, newest first (subject lines). */
    mainLog(): Promise<string[]>;
    /** A file as origin's main has it (undefined if absent). */
    show(file: string, ref?: string): Promise<string | undefined>;
    remove(): void;
}

/**
 * An origin holding this checkout's files (tracked and untracked-but-not-ignored, as in the working tree) with
 * `overrides` (path → content) committed on top, as the lab's repository would hold them.
 */
export async function makeOrigin(overrides: Record<string, string>): Promise<Origin> {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "if-origin-"));
    const bare = path.join(root, "origin.git");
    const work = path.join(root, "operator");
    const git = (args: string[], opts: { cwd?: string; reject?: boolean } = {}) =>
        execa("git", args, { cwd: opts.cwd ?? work, env: GIT_ID, reject: opts.reject ?? true, all: true });
    await execa("git", ["init", "-q", "--bare", "-b", "main", bare]);
    fs.writeFileSync(path.join(bare, "hooks", "pre-receive"), HOOK, { mode: 0o755 });
    await execa("git", ["clone", "-q", bare, work]);
    const files = (await execa("git", ["ls-files", "-co", "--exclude-standard", "-z"], { cwd: REPO_ROOT })).stdout.split("\0").filter(Boolean);
    for (const f of files) {
        const src = path.join(REPO_ROOT, f);
        if (!fs.existsSync(src)) continue; // deleted in the working tree
        fs.mkdirSync(path.dirname(path.join(work, f)), { recursive: true });
        fs.copyFileSync(src, path.join(work, f));
        fs.chmodSync(path.join(work, f), fs.statSync(src).mode);
    }
    for (const [f, content] of Object.entries(overrides)) {
        fs.mkdirSync(path.dirname(path.join(work, f)), { recursive: true });
        fs.writeFileSync(path.join(work, f), content);
    }
    // The operator's clone is set up as any checkout is (packages and tools linked, not committed), so pulumi runs in it.
    linkInstalled(work);
    fs.appendFileSync(path.join(work, ".git", "info", "exclude"), "/node_modules\n/.tools\n/policy/node_modules\n");
    await git(["add", "-A"]);
    await git(["commit", "-q", "-m", "The lab's repository (rehearsal endpoints)"]);
    await git(["push", "-q", "origin", "main"]);
    return {
        bare, work,
        git: (args, opts) => git(args, opts),
        mainLog: async () => (await execa("git", ["log", "--format=%s", "main"], { cwd: bare })).stdout.split("\n"),
        show: async (file, ref = "main") => {
            const r = await execa("git", ["show", `${ref}:${file}`], { cwd: bare, reject: false });
            return r.exitCode === 0 ? r.stdout : undefined;
        },
        remove: () => fs.rmSync(root, { recursive: true, force: true }),
    };
}

/** node_modules, the built tools and the policy pack's packages of this checkout, linked into another. */
function linkInstalled(dir: string): void {
    fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(dir, "node_modules"));
    fs.symlinkSync(path.join(REPO_ROOT, ".tools"), path.join(dir, ".tools"));
    if (fs.existsSync(path.join(REPO_ROOT, "policy", "node_modules"))) fs.symlinkSync(path.join(REPO_ROOT, "policy", "node_modules"), path.join(dir, "policy", "node_modules"));
}

export interface Contexts {
    vars: Record<string, string>;
    secrets: Record<string, string>;
    /** github.actor and github.repository (owner/name). */
    actor: string;
    repository: string;
}

export interface JobSpec {
    /** The workflow file whose job runs, and the job's id in it. */
    workflow: string;
    job: string;
    event: "push" | "pull_request" | "workflow_dispatch";
    /** refs/tags/v…, refs/heads/main, refs/pull/<n>/merge. */
    ref: string;
    sha: string;
    inputs?: Record<string, string>;
    matrix?: Record<string, string>;
    /** What the test environment adds (the registry's CA, retry pacing, the per-user cache): named in the test. */
    extraEnv?: Record<string, string>;
    /** Called once the job's process runs (the lock test freezes it). */
    onStart?: (job: execa.ExecaChildProcess, clone: string) => void;
}

export interface JobResult {
    exitCode: number;
    output: string;
    seconds: number;
    summary: string;
    outputs: Record<string, string>;
    clone: string;
    /** `git status --porcelain` of the clone after the job: empty when it left nothing behind. */
    status: string;
}

type Ctx = Record<string, unknown>;

/** A value of a GitHub expression (the subset our workflows use: paths, `||`, string literals, format(), secrets[…]). */
export function evaluate(expr: string, ctx: Ctx): string {
    const alternatives = splitTop(expr, "||");
    for (const alt of alternatives) {
        const v = term(alt.trim(), ctx);
        if (v) return v;
    }
    return "";
}

function splitTop(s: string, sep: string): string[] {
    const out: string[] = [];
    let depth = 0;
    let quote = false;
    let cur = "";
    for (let i = 0; i < s.length; i++) {
        const c = s[i];
        if (c === "'") quote = !quote;
        if (!quote && (c === "(" || c === "[")) depth++;
        if (!quote && (c === ")" || c === "]")) depth--;
        if (!quote && depth === 0 && s.startsWith(sep, i)) {
            out.push(cur);
            cur = "";
            i += sep.length - 1;
            continue;
        }
        cur += c;
    }
    out.push(cur);
    return out;
}

function term(t: string, ctx: Ctx): string {
    if (/^'.*'$/.test(t)) return t.slice(1, -1).replace(/''/g, "'");
    const fmt = /^format\((.*)\)$/.exec(t);
    if (fmt) {
        const [template, ...args] = splitTop(fmt[1], ",").map((a) => term(a.trim(), ctx));
        return template.replace(/\{(\d+)\}/g, (_, i: string) => args[Number(i)] ?? "");
    }
    const index = /^([a-z_]+)\[(.*)\]$/.exec(t);
    if (index) return String((ctx[index[1]] as Record<string, unknown> | undefined)?.[term(index[2], ctx)] ?? "");
    if (/^[a-z_][\w.-]*$/i.test(t)) {
        let v: unknown = ctx;
        for (const p of t.split(".")) v = v && typeof v === "object" ? (v as Record<string, unknown>)[p] : undefined;
        return v === undefined || v === null ? "" : String(v);
    }
    throw new Error(`ciRunner: expression not understood: ${t}`);
}

/** Replaces every ${{ … }} in a workflow value. */
export function interpolate(value: string, ctx: Ctx): string {
    return value.replace(/\$\{\{\s*([\s\S]*?)\s*\}\}/g, (_, e: string) => evaluate(e, ctx));
}

type Workflow = { jobs: Record<string, { env?: Record<string, string>; steps?: Array<{ run?: string; env?: Record<string, string> }> }> };

/** Runs one job of ours the way a runner would (see the file's header). */
export async function runJob(origin: Origin, spec: JobSpec, contexts: Contexts): Promise<JobResult> {
    const wf = parse(fs.readFileSync(path.join(origin.work, ".github", "workflows", spec.workflow), "utf8")) as Workflow;
    const job = wf.jobs[spec.job];
    const step = (job.steps ?? []).find((s) => s.run);
    if (!step?.run) throw new Error(`${spec.workflow}/${spec.job}: no run step`);
    const script = /^bash (scripts\/ci\/[a-z-]+\.sh)$/.exec(step.run)?.[1];
    if (!script) throw new Error(`${spec.workflow}/${spec.job}: the run step is not one script: ${step.run}`);

    const home = fs.mkdtempSync(path.join(os.tmpdir(), "if-runner-"));
    const clone = path.join(home, "work");
    const temp = path.join(home, "_temp");
    fs.mkdirSync(temp);
    // actions/checkout with fetch-depth 0: every branch and tag, the event's commit checked out (detached).
    await execa("git", ["clone", "-q", "--no-local", origin.bare, clone]);
    await execa("git", ["checkout", "-q", "--detach", spec.sha], { cwd: clone });
    // What a warm runner's per-user caches make of setup: the installed packages and built tools (setup.sh still
    // runs and checks them, and finds them current). The links are the runner's, not changes of the checkout.
    linkInstalled(clone);
    fs.appendFileSync(path.join(clone, ".git", "info", "exclude"), "/node_modules\n/.tools\n/policy/node_modules\n");

    const [owner] = contexts.repository.split("/");
    const refType = spec.ref.startsWith("refs/tags/") ? "tag" : "branch";
    const refName = spec.ref.replace(/^refs\/(tags|heads)\//, "");
    const event = {
        ref: spec.ref, repository: { full_name: contexts.repository, default_branch: "main", name: contexts.repository.split("/")[1] },
        ...(spec.event === "pull_request" ? { pull_request: { number: Number(/refs\/pull\/(\d+)/.exec(spec.ref)?.[1] ?? 1), head: { sha: spec.sha } } } : {}),
        ...(spec.event === "workflow_dispatch" ? { inputs: spec.inputs ?? {} } : {}),
    };
    const eventPath = path.join(temp, "event.json");
    fs.writeFileSync(eventPath, JSON.stringify(event));
    const summary = path.join(temp, "step_summary");
    const output = path.join(temp, "output");
    fs.writeFileSync(summary, "");
    fs.writeFileSync(output, "");
    const ctx: Ctx = {
        vars: contexts.vars, secrets: { GITHUB_TOKEN: contexts.secrets.GITHUB_TOKEN ?? "", ...contexts.secrets },
        inputs: spec.inputs ?? {}, matrix: spec.matrix ?? {},
        github: { actor: contexts.actor, repository: contexts.repository, event_name: spec.event, ref: spec.ref, ref_name: refName, ref_type: refType, sha: spec.sha, token: contexts.secrets.GITHUB_TOKEN, event },
    };
    const stepEnv = Object.fromEntries(Object.entries({ ...job.env, ...step.env }).map(([k, v]) => [k, interpolate(String(v), ctx)]));
    const env: Record<string, string> = {
        // The runner's own home: no git identity, no pulumi credentials; the per-user caches come by IMAGE_FACTORY_CACHE.
        PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, LANG: "C.UTF-8",
        CI: "true", GITHUB_ACTIONS: "true", GITHUB_EVENT_NAME: spec.event, GITHUB_EVENT_PATH: eventPath, GITHUB_REF: spec.ref,
        GITHUB_REF_NAME: refName, GITHUB_REF_TYPE: refType, GITHUB_SHA: spec.sha, GITHUB_REPOSITORY: contexts.repository,
        GITHUB_REPOSITORY_OWNER: owner, GITHUB_ACTOR: contexts.actor, GITHUB_WORKSPACE: clone, GITHUB_SERVER_URL: "https://github.com",
        GITHUB_STEP_SUMMARY: summary, GITHUB_OUTPUT: output, RUNNER_TEMP: temp,
        ...spec.extraEnv,
        ...stepEnv,
    };
    const t0 = Date.now();
    const child = execa("bash", [script], { cwd: clone, env, extendEnv: false, reject: false, all: true });
    spec.onStart?.(child, clone);
    const r = await child;
    const status = (await execa("git", ["status", "--porcelain"], { cwd: clone })).stdout;
    const outputs = Object.fromEntries(fs.readFileSync(output, "utf8").split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    return { exitCode: r.exitCode, output: r.all ?? "", seconds: (Date.now() - t0) / 1000, summary: fs.readFileSync(summary, "utf8"), outputs, clone, status };
}
