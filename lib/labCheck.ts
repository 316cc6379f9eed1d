// `make lab.check STACK=…`: what a lab run needs, checked in seconds and read-only (but for one probe file in the
// artifact store, removed again) before an hour of builds, every problem reported at once with its fix. scripts/ci/up.sh
// runs it first. Each check is a function of the config and the environment, so the tests call them one by one.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import execa from "execa";
import { ConfigError, inlineKeys, placeholderProblems, type FactoryConfig } from "./config";
import { isApiToken } from "./publish/proxmoxApi";

export interface Finding {
    status: "ok" | "fail" | "note";
    what: string;
    detail: string;
}

const ok = (what: string, detail: string): Finding => ({ status: "ok", what, detail });
const fail = (what: string, detail: string): Finding => ({ status: "fail", what, detail });
const note = (what: string, detail: string): Finding => ({ status: "note", what, detail });

/** Secure (encrypted) config keys the stack file holds: a secret set with `pulumi config set --secret`. */
export function secureKeysOf(stackFileText: string): Set<string> {
    return new Set([...stackFileText.matchAll(/^\s{2}(factory:[A-Za-z]+):\s*\n\s{4}secure:/gm)].map((m) => m[1]));
}

/** Loopback hosts, where the local stack's plain-HTTP registry needs no token. */
const isLoopback = (host: string) => /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/.test(host);

/** A token for each enabled target: from the environment CI passes, or a secret in the stack file. */
export function checkSecrets(config: FactoryConfig, env: NodeJS.ProcessEnv, secure: Set<string>): Finding[] {
    const out: Finding[] = [];
    const need = (what: string, envName: string, key: string, fix: string, shape?: { valid: (v: string) => boolean; looksLike: string }) => {
        const v = env[envName];
        if (secure.has(`factory:${key}`)) out.push(ok(what, `factory:${key} (a secret of the stack)`));
        else if (!v) out.push(fail(what, `neither ${envName} nor the secret factory:${key} is set: ${fix}`));
        else if (shape && !shape.valid(v)) out.push(fail(what, `${envName} does not look like ${shape.looksLike}: ${fix}`));
        else out.push(ok(what, `${envName} (${v.length} characters)`));
    };
    if (!env.PULUMI_CONFIG_PASSPHRASE) out.push(fail("secrets passphrase", "PULUMI_CONFIG_PASSPHRASE is empty: the repository secret PULUMI_CONFIG_PASSPHRASE (the stacks' secrets provider)"));
    else out.push(ok("secrets passphrase", "PULUMI_CONFIG_PASSPHRASE"));
    if (config.oci?.enabled && !isLoopback(config.oci.registry)) {
        need(`OCI push to ${config.oci.registry}`, "GHCR_TOKEN", "ghcrToken", "the secret GHCR_TOKEN (write:packages) or the workflow's GITHUB_TOKEN with packages: write");
    }
    if (config.release?.enabled) need(`GitHub release ${config.release.owner}/${config.release.repo}`, "GITHUB_TOKEN", "githubToken", "the secret RELEASE_TOKEN (contents: write) or the workflow's GITHUB_TOKEN");
    if (config.proxmox?.enabled) need(`Proxmox ${config.proxmox.node}`, "PROXMOX_VE_API_TOKEN", "proxmoxApiToken", `the secret PROXMOX_API_TOKEN_${config.lab} (user@realm!tokenid=secret)`,
        { valid: isApiToken, looksLike: "user@realm!tokenid=secret" });
    return out;
}

/** The state backend: set, outside the checkout, and answering (pulumi stack ls lists this project's stacks). */
export async function checkBackend(stack: string, projectDir: string, env: NodeJS.ProcessEnv): Promise<Finding> {
    const url = env.PULUMI_BACKEND_URL;
    const what = "state backend";
    if (!url) return fail(what, "PULUMI_BACKEND_URL is not set: the repository variable PULUMI_BACKEND_URL (README 'Where the lab's state lives')");
    const shown = url.replace(/\?.*$/, "");
    if (url.startsWith("file://")) {
        const dir = path.resolve(decodeURIComponent(new URL(url).pathname));
        if (`${dir}/`.startsWith(`${path.resolve(projectDir)}/`)) return fail(what, `${shown} is inside the checkout: a runner's clean checkout deletes it; use an S3 backend or a directory on a persistent disk`);
    }
    const r = await execa("pulumi", ["stack", "ls", "--json", "--non-interactive"], { cwd: projectDir, env, reject: false, timeout: 60_000 });
    if (r.exitCode !== 0) return fail(what, `${shown} does not answer (${(r.stderr || r.stdout).trim().split("\n").pop()}); check the URL and, for S3, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY`);
    const stacks = (JSON.parse(r.stdout || "[]") as Array<{ name: string }>).map((s) => s.name.split("/").pop());
    return ok(what, `${shown} answers; stack ${stack} ${stacks.includes(stack) ? "exists" : "does not exist yet (the first run creates it)"}`);
}

/**
 * The store's public URL serves this store: a probe file written into factory:artifactStore.root comes back,
 * byte for byte, from factory:artifactStore.publicBaseUrl (what the Proxmox node downloads from).
 */
export async function checkStoreUrl(config: FactoryConfig, resolve: (p: string) => string, fetchImpl: typeof fetch = fetch): Promise<Finding> {
    const store = config.artifactStore;
    const what = "artifact store URL";
    if (!store.publicBaseUrl) return note(what, "no factory:artifactStore.publicBaseUrl: nothing outside this machine downloads from the store");
    const root = resolve(store.root);
    const name = `lab-check-${crypto.randomBytes(8).toString("hex")}.txt`;
    const dir = path.join(root, ".image-factory-probe");
    const file = path.join(dir, name);
    const body = `image-factory lab.check probe ${crypto.randomBytes(16).toString("hex")}\n`;
    const url = `${store.publicBaseUrl.replace(/\/+$/, "")}/.image-factory-probe/${name}`;
    const ways = `serve ${root} at ${store.publicBaseUrl}: on the builder node its nginx does (the builder-node image serves /srv/artifacts on :8089); ` +
        "on another host, `make serve STACK=<stack>` (or the unit deploy/image-factory-artifacts.service) serves the stack's store";
    try {
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(file, body);
    } catch (err) {
        return fail(what, `cannot write into the store ${root} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): create it, owned by the runner's user`);
    }
    try {
        const r = await fetchImpl(url, { signal: AbortSignal.timeout(10_000), redirect: "follow" });
        const got = await r.text();
        if (r.status !== 200) return fail(what, `${url} answered HTTP ${r.status}, not the probe just written into ${root}: ${ways}`);
        if (got !== body) return fail(what, `${url} serves another directory than the store ${root} (the probe's bytes differ): ${ways}`);
        return ok(what, `${store.publicBaseUrl} serves ${root} (probe written and read back)`);
    } catch (err) {
        return fail(what, `${url} cannot be fetched (${(err as Error).cause ? String((err as Error).cause) : (err as Error).message}): ${ways}`);
    } finally {
        fs.rmSync(file, { force: true });
        try { fs.rmdirSync(dir); } catch { /* not empty: another check's probe */ }
    }
}

/** Major.minor of a version string (`v20.19.2`, `go1.26.8`). */
function versionOf(text: string): [number, number] | undefined {
    const m = /(\d+)\.(\d+)/.exec(text);
    return m ? [Number(m[1]), Number(m[2])] : undefined;
}
const atLeast = (v: [number, number] | undefined, want: [number, number]) => !!v && (v[0] > want[0] || (v[0] === want[0] && v[1] >= want[1]));

/** The runner: its user, Node and Go versions, and KVM (or what TCG costs). */
export async function checkRunner(projectDir: string, env: NodeJS.ProcessEnv): Promise<Finding[]> {
    const out: Finding[] = [];
    const uid = process.getuid?.();
    out.push(uid === 0 ? note("runner user", "root: no build needs it (every image root is built in a user namespace, as root too); an ordinary user with a subordinate id range is enough")
        : ok("runner user", `uid ${uid}`));
    // The rootfs builder's namespace, made once the way a build makes it (bin/userns-check.ts; lib/stages stays a leaf).
    const ns = await execa(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(projectDir, "bin", "userns-check.ts")],
        { reject: false, env, cwd: projectDir });
    const said = ns.stdout.replace(/^\s*(ok|MISSING)\s+user namespaces\s+(\(required\)\s*)?/, "").trim() || ns.stderr.trim();
    out.push(ns.exitCode === 0 ? ok("build namespace", `rootfs builds run without root here: ${said}`) : fail("build namespace", said));
    const node = versionOf(process.version);
    out.push(atLeast(node, [20, 19]) ? ok("Node.js", process.version) : fail("Node.js", `${process.version}: the program needs ≥ 20.19 (package.json engines)`));
    const goWant = versionOf(/^go (\S+)$/m.exec(fs.readFileSync(path.join(projectDir, "tools", "go.mod"), "utf8"))?.[1] ?? "1.26") as [number, number];
    const go = await execa("go", ["env", "GOVERSION"], { reject: false, env });
    out.push(go.exitCode !== 0 ? fail("Go", `not found: the engine and tools are built from Go modules; install Go ≥ ${goWant.join(".")}`)
        : atLeast(versionOf(go.stdout), goWant) ? ok("Go", go.stdout.trim()) : fail("Go", `${go.stdout.trim()}: tools/go.mod needs ≥ ${goWant.join(".")}`));
    const virt = await execa("bash", [path.join(projectDir, "scripts", "virt-check.sh"), "--json"], { reject: false, env });
    try {
        const v = JSON.parse(virt.stdout.trim().split("\n").pop() ?? "{}") as { accel: string; reason: string };
        out.push(v.accel === "kvm" ? ok("virtualisation", `KVM (${v.reason})`)
            : note("virtualisation", `TCG (${v.reason}): boots and Packer builds run 5-10x slower (measured on 2 cores: a boot check ~2 min, the builder node ~12 min)`));
    } catch {
        out.push(note("virtualisation", `scripts/virt-check.sh said nothing usable: ${virt.stderr.trim()}`));
    }
    return out;
}

/**
 * The config as findings: a ConfigError's problems become one line each. `load` parses with placeholder keys allowed,
 * so a placeholder is one finding and the targets are still checked.
 */
export function configFinding(load: () => FactoryConfig): { config?: FactoryConfig; findings: Finding[] } {
    try {
        const config = load();
        const placeholders = placeholderProblems(config.lab, inlineKeys(config)).map((p) => fail("bootstrap key", p));
        return { config, findings: [ok("stack config", `lab ${config.lab}, ${config.images.length} image(s), max pass ${config.maxPass}`), ...placeholders] };
    } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
        return { findings: problems.map((p) => fail("stack config", p)) };
    }
}

export function formatFindings(stack: string, findings: Finding[]): string {
    const mark = { ok: "ok  ", fail: "FAIL", note: "note" } as const;
    const failed = findings.filter((f) => f.status === "fail").length;
    return [...findings.map((f) => `${mark[f.status]}  ${f.what}: ${f.detail}`),
        failed ? `lab.check ${stack}: ${failed} problem(s); fix them before the run (nothing was built)` : `lab.check ${stack}: ready`].join("\n");
}
