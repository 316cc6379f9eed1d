// Runs the real Pulumi CLI against a throwaway copy of the project, so tests never touch the checkout's own
// stacks, state or artifact store. Each copy has its own file backend.
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "./setup";

export const PROJECT_ENTRIES = ["Pulumi.yaml", "Pulumi.local.yaml", "Pulumi.dvnt.yaml", "Pulumi.dvntm.yaml", "index.ts",
    "package.json", "tsconfig.json", "components", "providers", "lib", "images", "ansible", "policy", "schemas", "scripts", "bin"];

export const LOCAL_PASSPHRASE = "image-factory-local";

export interface PulumiResult {
    exitCode: number;
    stdout: string;
    stderr: string;
    all: string;
}

export class TestProject {
    readonly dir: string;
    readonly backend: string;
    readonly env: Record<string, string>;

    private constructor(dir: string, extraEnv: Record<string, string>) {
        this.dir = dir;
        this.backend = path.join(dir, ".pulumi-state");
        fs.mkdirSync(this.backend, { recursive: true });
        this.env = {
            // metadata=skip: no .attrs sidecars, whose non-atomic rewrite races a StackReference read (scripts/env.sh).
            PULUMI_BACKEND_URL: `file://${this.backend}?metadata=skip`,
            PULUMI_CONFIG_PASSPHRASE: LOCAL_PASSPHRASE,
            ...extraEnv,
        };
    }

    /** Copies the program (not node_modules, state or artifacts) into a temp dir; node_modules is linked. */
    static create(opts: { from?: string; entries?: string[]; env?: Record<string, string> } = {}): TestProject {
        const from = opts.from ?? REPO_ROOT;
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-project-"));
        for (const entry of opts.entries ?? PROJECT_ENTRIES) {
            const src = path.join(from, entry);
            if (fs.existsSync(src)) fs.cpSync(src, path.join(dir, entry), { recursive: true, filter: (s) => !s.includes("node_modules") });
        }
        fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(dir, "node_modules"));
        // The built tools, as a checkout after setup has them (the builder node's image carries some of them).
        if (fs.existsSync(path.join(REPO_ROOT, ".tools"))) fs.symlinkSync(path.join(REPO_ROOT, ".tools"), path.join(dir, ".tools"));
        const policyModules = path.join(REPO_ROOT, "policy", "node_modules");
        if (fs.existsSync(path.join(dir, "policy")) && fs.existsSync(policyModules)) fs.symlinkSync(policyModules, path.join(dir, "policy", "node_modules"));
        return new TestProject(dir, opts.env ?? {});
    }

    async pulumi(args: string[], opts: { env?: Record<string, string>; reject?: boolean; input?: string } = {}): Promise<PulumiResult> {
        const r = await execa("pulumi", [...args, "--non-interactive"], {
            cwd: this.dir,
            env: { ...this.env, ...opts.env },
            reject: false,
            all: true,
            input: opts.input,
        });
        const result = { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, all: r.all ?? "" };
        if (opts.reject !== false && r.exitCode !== 0) {
            throw new Error(`pulumi ${args.join(" ")} failed (${r.exitCode}):\n${result.all}`);
        }
        return result;
    }

    /** `pulumi stack init` reuses the committed encryptionsalt of Pulumi.<stack>.yaml when there is one. */
    async initStack(stack: string): Promise<void> {
        await this.pulumi(["stack", "init", stack, "--secrets-provider", "passphrase"]);
    }

    async setConfig(stack: string, key: string, value: string, opts: { path?: boolean; secret?: boolean } = {}): Promise<void> {
        const args = ["config", "set", "--stack", stack];
        if (opts.path) args.push("--path");
        if (opts.secret) args.push("--secret");
        await this.pulumi([...args, key, value]);
    }

    async outputs(stack: string): Promise<Record<string, unknown>> {
        const r = await this.pulumi(["stack", "output", "--json", "--stack", stack]);
        return JSON.parse(r.stdout) as Record<string, unknown>;
    }

    /** The engine's own verdict on a preview: the count of each step kind. */
    async previewSummary(stack: string): Promise<Record<string, number>> {
        const r = await this.pulumi(["preview", "--stack", stack, "--json"]);
        const json = JSON.parse(r.stdout) as { changeSummary?: Record<string, number> };
        return json.changeSummary ?? {};
    }

    /**
     * Runs `pulumi up --json` and decodes its event stream: the change counts of the summary event and every
     * diagnostic (message, severity, urn) the engine printed.
     */
    async upEvents(stack: string, extra: string[] = [], env?: Record<string, string>): Promise<UpEvents> {
        const r = await this.pulumi(["up", "--stack", stack, "--yes", "--json", ...extra], { reject: false, env });
        const docs = parseJsonStream(r.stdout);
        const summary = docs.find((d) => "summaryEvent" in d)?.summaryEvent as { resourceChanges?: Record<string, number>; result?: string } | undefined;
        const diagnostics = docs.filter((d) => "diagnosticEvent" in d).map((d) => d.diagnosticEvent as Diagnostic);
        if (r.exitCode !== 0) {
            const errors = diagnostics.filter((d) => d.severity === "error").map((d) => `${d.urn ?? ""}: ${d.message}`).join("");
            // An error outside the event stream (e.g. before the engine starts) is only on stderr or in stdout's tail.
            throw Object.assign(new Error(`pulumi up failed (${r.exitCode}):\n${errors}\n${r.stderr}\n${errors ? "" : r.stdout.slice(-3000)}`), { diagnostics, exitCode: r.exitCode });
        }
        return { changes: summary?.resourceChanges ?? {}, diagnostics, result: summary?.result ?? "unknown" };
    }

    /** Reads the stack's checkpoint straight from the file backend (what `pulumi stack export` prints). */
    async exportState(stack: string): Promise<{ deployment: { resources?: Array<Record<string, unknown>> } }> {
        const r = await this.pulumi(["stack", "export", "--stack", stack]);
        return JSON.parse(r.stdout) as { deployment: { resources?: Array<Record<string, unknown>> } };
    }

    /**
     * Replaces the program with the one in `from` (another commit's tree, this checkout), as `git pull` would: every
     * project entry except the stack config files, which hold this stack's settings. State, store and backend stay.
     */
    replaceProgram(from: string): void {
        for (const entry of PROJECT_ENTRIES.filter((e) => !/^Pulumi\.[^.]+\.yaml$/.test(e))) {
            fs.rmSync(path.join(this.dir, entry), { recursive: true, force: true });
            const src = path.join(from, entry);
            if (fs.existsSync(src)) fs.cpSync(src, path.join(this.dir, entry), { recursive: true, filter: (s) => !s.includes("node_modules") });
        }
        const policyModules = path.join(REPO_ROOT, "policy", "node_modules");
        if (fs.existsSync(path.join(this.dir, "policy")) && fs.existsSync(policyModules)) fs.symlinkSync(policyModules, path.join(this.dir, "policy", "node_modules"));
    }

    remove(): void {
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}

export interface Diagnostic {
    message: string;
    severity: string;
    urn?: string;
    ephemeral?: boolean;
}

export interface UpEvents {
    changes: Record<string, number>;
    diagnostics: Diagnostic[];
    result: string;
}

/** `pulumi up --json` prints a sequence of JSON documents; this splits and parses them. */
export function parseJsonStream(text: string): Array<Record<string, unknown>> {
    const docs: Array<Record<string, unknown>> = [];
    let depth = 0;
    let start = -1;
    let inString = false;
    let escaped = false;
    for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (inString) {
            if (escaped) escaped = false;
            else if (c === "\\") escaped = true;
            else if (c === '"') inString = false;
            continue;
        }
        if (c === '"') inString = true;
        else if (c === "{") {
            if (depth === 0) start = i;
            depth++;
        } else if (c === "}") {
            depth--;
            if (depth === 0 && start >= 0) {
                docs.push(JSON.parse(text.slice(start, i + 1)) as Record<string, unknown>);
                start = -1;
            }
        }
    }
    return docs;
}
