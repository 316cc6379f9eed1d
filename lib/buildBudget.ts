// Builds share the machine. The engine starts every build it can at once (up to `--parallel`, 4 × cores by
// default), and nothing but data dependencies orders them, so a lab of nine images started nine builds, Packer VMs
// among them, on two cores. Each build now asks for the cores and memory it uses before it starts, and waits
// while the builds already running, in any process of this user (two stacks, a test beside a run), hold too much.
// A build that needs more than the whole machine runs once it is alone, so nothing waits forever.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { writeFileAtomic } from "./atomic";
import { sleep } from "./backoff";
import { cacheRoot } from "./cacheRoot";
import { processAlive, withFileLock } from "./fileLock";

export interface Resources {
    cpus: number;
    memoryMiB: number;
}

interface Holder extends Resources {
    token: string;
    pid: number;
    label: string;
}

/** Memory kept for the engine, the language host and the system, never given to builds. */
const RESERVED_MIB = 1024;

/** What builds may hold at once: IMAGE_FACTORY_BUILD_CPUS and IMAGE_FACTORY_BUILD_MEMORY_MIB, else the machine's. */
export function machineBudget(env: NodeJS.ProcessEnv = process.env): Resources {
    const fromEnv = (name: string): number | undefined => {
        const v = env[name];
        if (v === undefined || v === "") return undefined;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${v}: expected a whole number of at least 1 (it bounds what builds may hold at once)`);
        return n;
    };
    return {
        cpus: fromEnv("IMAGE_FACTORY_BUILD_CPUS") ?? os.availableParallelism(),
        memoryMiB: fromEnv("IMAGE_FACTORY_BUILD_MEMORY_MIB") ?? Math.max(512, Math.floor(os.totalmem() / 2 ** 20) - RESERVED_MIB),
    };
}

function total(held: readonly Resources[]): Resources {
    return { cpus: held.reduce((s, h) => s + h.cpus, 0), memoryMiB: held.reduce((s, h) => s + h.memoryMiB, 0) };
}

/** Whether `need` may start beside `held` within `budget` (always, when nothing else runs). */
export function fits(need: Resources, held: readonly Resources[], budget: Resources): boolean {
    if (held.length === 0) return true;
    const sum = total(held);
    return sum.cpus + need.cpus <= budget.cpus && sum.memoryMiB + need.memoryMiB <= budget.memoryMiB;
}

function ledgerPath(): string {
    return path.join(cacheRoot(), "build-budget", "holders.json");
}

function readHolders(file: string): Holder[] {
    try {
        const all = JSON.parse(fs.readFileSync(file, "utf8")) as Holder[];
        return all.filter((h) => processAlive(h.pid)); // a build whose process died holds nothing
    } catch {
        return [];
    }
}


/**
 * Waits until `need` fits beside the builds running, records it, and returns its release. `onWait` hears once
 * what the build waits for.
 */
export async function admitBuild(label: string, need: Resources, onWait: (message: string) => void = () => undefined,
    opts: { budget?: Resources; pollMs?: number } = {}): Promise<() => Promise<void>> {
    const budget = opts.budget ?? machineBudget();
    const file = ledgerPath();
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const lock = `${file}.lock`;
    const token = crypto.randomBytes(8).toString("hex");
    let told = false;
    for (;;) {
        const waitingFor = await withFileLock(lock, async () => {
            const holders = readHolders(file);
            if (fits(need, holders, budget)) {
                // Written only under the lock, so writeFileAtomic's one .partial name is never shared.
                await writeFileAtomic(file, JSON.stringify([...holders, { token, pid: process.pid, label, ...need }]));
                return undefined;
            }
            return holders;
        });
        if (!waitingFor) break;
        if (!told) {
            told = true;
            const sum = total(waitingFor);
            onWait(`→ ${label}: waiting for room to build (needs ${need.cpus} CPU, ${need.memoryMiB} MiB; ` +
                `${waitingFor.map((h) => h.label).join(", ")} hold${waitingFor.length === 1 ? "s" : ""} ` +
                `${sum.cpus} of ${budget.cpus} CPU, ${sum.memoryMiB} of ${budget.memoryMiB} MiB; ` +
                "IMAGE_FACTORY_BUILD_CPUS and IMAGE_FACTORY_BUILD_MEMORY_MIB set the budget)");
        }
        await sleep(opts.pollMs ?? 1000);
    }
    return () => withFileLock(lock, () => writeFileAtomic(file, JSON.stringify(readHolders(file).filter((h) => h.token !== token))));
}
