// Subprocesses through execa, with errors that carry the command, the exit code and the tail of stderr, and a
// missing tool reported with the Debian package that provides it.
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "./buildlog";
import { UserError } from "./errors";

// A failed command is an Error with extra fields (command, exit code, stderr); a missing tool is a UserError.
export interface CommandError extends Error {
    name: "CommandError";
    command: string;
    exitCode: number | undefined;
    stderr: string;
}

/** A command the factory runs is not installed: the user installs it (the message names the Debian package). */
export class ToolMissingError extends UserError {
    constructor(message: string, readonly tool: string, readonly pkg?: string) {
        super(message);
        this.name = "ToolMissingError";
    }
}

export function commandError(command: string, exitCode: number | undefined, stderr: string, hint?: string): CommandError {
    const e = new Error(`${command} failed${exitCode === undefined ? "" : ` with exit code ${exitCode}`}` +
        `${stderr ? `:\n${tail(stderr, 25)}` : ""}${hint ? `\n${hint}` : ""}`);
    return Object.assign(e, { name: "CommandError" as const, command, exitCode, stderr });
}

export function toolMissingError(tool: string, pkg?: string): ToolMissingError {
    return new ToolMissingError(`${tool} is not installed or not on PATH` +
        (pkg ? `: install the Debian package ${pkg} (bash scripts/setup.sh does it) or put ${tool} on PATH` : ""), tool, pkg);
}

export function isToolMissing(err: unknown): err is ToolMissingError {
    return err instanceof ToolMissingError;
}

function tail(text: string, lines: number): string {
    const all = text.trimEnd().split("\n");
    return (all.length > lines ? ["…", ...all.slice(-lines)] : all).map((l) => `  ${l}`).join("\n");
}

/** scripts/os-packages.txt (the list setup installs): each command (or file) with its Debian package. */
export function osPackages(): Array<{ command: string; pkg: string }> {
    const file = path.resolve(__dirname, "..", "scripts", "os-packages.txt");
    if (!fs.existsSync(file)) return [];
    return fs.readFileSync(file, "utf8").split("\n").map((line) => line.trim().split(/\s+/))
        .filter(([cmd, pkg]) => cmd && pkg && !cmd.startsWith("#")).map(([command, pkg]) => ({ command, pkg }));
}

/** tool -> Debian package, from scripts/os-packages.txt. */
export function debianPackageOf(tool: string): string | undefined {
    return osPackages().find((p) => p.command === path.basename(tool))?.pkg;
}

export interface RunOptions {
    cwd?: string;
    env?: Record<string, string | undefined>;
    input?: string;
    log?: BuildLog;
    /** Appended to the error message when the command fails: how to fix it. */
    hint?: string;
    timeoutMs?: number;
    /** Sees every chunk of output as it arrives (progress from long-running tools). */
    onOutput?: (chunk: string) => void;
    /** Start from an empty environment (plus opts.env) instead of this process's: keeps host secrets out of chroots. */
    cleanEnv?: boolean;
    /** Stops the command when it fires (SIGTERM, SIGKILL 30 s later); the run then fails saying it was stopped. */
    abort?: AbortSignal;
    /**
     * Runs once the command has started, before it may go on: the child gets a pipe as fd 3 and reads "go" from it
     * once this resolves (lib/stages/namespace.ts writes a user namespace's id maps here). If it throws, the child
     * is killed and the run fails with that error.
     */
    gate?: (pid: number) => Promise<void>;
    /** How the command is shown in the build log and in errors, when not as it is run (a wrapper's script adds nothing). */
    shownAs?: string;
    /** What a stop sends first (SIGTERM unless said; SIGKILL follows 30 s later). */
    stopSignal?: NodeJS.Signals;
}

export interface RunResult {
    stdout: string;
    stderr: string;
}

export function showCommand(argv: readonly string[]): string {
    return argv.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(" ");
}

/** Runs a command to completion; output goes to the build log when one is given. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const shown = opts.shownAs ?? showCommand([cmd, ...args]);
    opts.log?.line(`$ ${shown}`);
    // Resolved the way which() (and the pre-flight checks) find it: a PATH without the sbin directories still runs
    // /usr/sbin tools, instead of passing the check and then failing to start.
    const resolved = cmd.includes("/") ? cmd : which(cmd, opts.env?.PATH ?? process.env.PATH ?? "") ?? cmd;
    const child = execa(resolved, [...args], {
        cwd: opts.cwd,
        env: opts.env,
        input: opts.input,
        reject: false,
        all: true,
        timeout: opts.timeoutMs,
        extendEnv: !opts.cleanEnv,
        stripFinalNewline: false,
        ...(opts.gate ? { stdio: ["pipe", "pipe", "pipe", "pipe"] as const } : {}),
    });
    if (opts.gate && child.pid !== undefined) { // no pid: it did not start, and the result below says why
        const go = child.stdio[3] as NodeJS.WritableStream;
        go.on("error", () => undefined); // a child that died first: its own exit status says why
        try {
            await opts.gate(child.pid);
            go.end("go\n");
        } catch (e) {
            child.kill("SIGKILL");
            await child.catch(() => undefined);
            throw e;
        }
    }
    if (opts.log || opts.onOutput) {
        child.all?.on("data", (chunk: Buffer) => {
            opts.log?.write(chunk.toString());
            opts.onOutput?.(chunk.toString());
        });
    }
    const stop = () => child.kill(opts.stopSignal ?? "SIGTERM", { forceKillAfterTimeout: 30_000 });
    opts.abort?.addEventListener("abort", stop, { once: true });
    if (opts.abort?.aborted) stop();
    const r = await child.finally(() => opts.abort?.removeEventListener("abort", stop));
    if (opts.abort?.aborted) throw commandError(shown, r.exitCode, r.stderr || r.stdout, "stopped by the factory before it finished");
    // execa reports a command that could not start with no exit code and the spawn errno's code.
    if (r.failed && r.exitCode === undefined && (r as unknown as { code?: string }).code === "ENOENT") {
        throw toolMissingError(cmd, debianPackageOf(cmd));
    }
    if (r.timedOut) throw commandError(shown, undefined, r.stderr, `timed out after ${opts.timeoutMs} ms`);
    if (r.exitCode !== 0) throw commandError(shown, r.exitCode, r.stderr || r.stdout, opts.hint);
    return { stdout: r.stdout, stderr: r.stderr };
}

/**
 * `command -v`: the absolute path of a tool, or undefined. The sbin directories are searched after PATH because a
 * non-root user's PATH often lacks them while run() still finds the tool there.
 */
export function which(tool: string, envPath = process.env.PATH ?? "", sbin: string[] = ["/usr/sbin", "/sbin"]): string | undefined {
    for (const dir of [...envPath.split(path.delimiter), ...sbin]) {
        if (!dir) continue;
        const p = path.join(dir, tool);
        try {
            fs.accessSync(p, fs.constants.X_OK);
            return p;
        } catch {
            /* next */
        }
    }
    return undefined;
}

export function requireTool(tool: string): string {
    const p = which(tool);
    if (!p) throw toolMissingError(tool, debianPackageOf(tool));
    return p;
}
