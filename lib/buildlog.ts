// A build's log: every command and its output go to a file kept next to the artifact, secrets redacted, and
// each named stage reports its start and elapsed time to a progress callback (the engine's log in `pulumi up`).
import * as fs from "node:fs";
import * as path from "node:path";
import { redact, secretsFromEnv } from "./redact";

export type Progress = (message: string) => void;

export class BuildLog {
    private readonly fd: number;
    private readonly secrets: string[];
    private readonly started = Date.now();
    private stageIndex = 0;

    constructor(readonly file: string, readonly label: string, private readonly progress: Progress = () => undefined, secrets: string[] = []) {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        this.fd = fs.openSync(file, "a");
        this.secrets = [...secrets, ...secretsFromEnv()];
    }

    write(text: string): void {
        fs.writeSync(this.fd, redact(text, this.secrets));
    }

    line(text: string): void {
        this.write(`${new Date().toISOString()} ${text}\n`);
    }

    /** Reports to the user (and the log). */
    info(message: string): void {
        this.line(message);
        this.progress(redact(message, this.secrets));
    }

    /** Runs a named stage: "→ <label>: [n/total] <name>" when it starts, "... done in Xs" when it ends. */
    async stage<T>(name: string, total: number, fn: () => Promise<T>): Promise<T> {
        const n = ++this.stageIndex;
        const t0 = Date.now();
        this.info(`→ ${this.label}: [${n}/${total}] ${name}…`);
        try {
            const result = await fn();
            this.info(`→ ${this.label}: [${n}/${total}] ${name} done in ${seconds(Date.now() - t0)} (total ${seconds(Date.now() - this.started)})`);
            return result;
        } catch (err) {
            this.line(`stage ${name} failed after ${seconds(Date.now() - t0)}: ${(err as Error).message}`);
            throw err;
        }
    }

    close(): void {
        try {
            fs.closeSync(this.fd);
        } catch {
            /* already closed */
        }
    }
}

export function seconds(ms: number): string {
    return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}
