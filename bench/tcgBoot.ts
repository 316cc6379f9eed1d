// How many vCPUs a VM gets under TCG (lib/guestVm.ts TCG_CPUS): the boot gate of the local stack's image, booted
// alternately with 2 vCPUs and with 1 (IMAGE_FACTORY_TCG_CPUS), under TCG whatever the host offers, each to the end of
// its smoke checks; prints the median time to SSH and to the end of the checks, and the ratio 2/1.
//   npm run bench:tcg -- [runs per shape, default 3]      (about 2 min a boot on 2 cores; needs root to build the image once)
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildImage } from "../lib/stages/pipeline";
import { planBuild } from "../lib/stages/plan";
import { resolveDebianSource } from "../lib/aptSources";
import { loadRecipe } from "../lib/recipe";
import { bootCheck } from "../lib/validation/bootCheck";
import { TCG_CPUS } from "../lib/guestVm";
import { benchRow } from "./row";

const projectDir = path.resolve(__dirname, "..");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
    const runs = Number(process.argv[2] ?? 3);
    const key = fs.readFileSync(path.join(projectDir, ".cache", "local-ssh", "id_ed25519.pub"), "utf8").trim();
    const plan = planBuild({
        recipe: loadRecipe("debian-12-minimal"), projectDir, workDir: path.join(projectDir, ".cache", "bench-tcg"), domain: "bench.invalid",
        debian: resolveDebianSource({ suite: "bookworm" }, true), bootstrapUser: { name: "ansible", authorizedKeys: [key] },
    });
    const image = await buildImage({ ...plan.request, version: "v2026.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } });
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "if-bench-tcg-"));
    const times: Record<string, { ssh: number[]; total: number[] }> = { "2": { ssh: [], total: [] }, "1": { ssh: [], total: [] } };
    try {
        for (let i = 0; i < runs; i++) {
            for (const cpus of ["2", "1"]) {
                process.env.IMAGE_FACTORY_TCG_CPUS = cpus;
                const r = await bootCheck({ image: image.path, name: "debian-12-minimal", user: "ansible", hostname: "bench-tcg", workDir: work, accelerators: ["tcg"] });
                if (!r.passed) throw new Error(`the boot with ${cpus} vCPU(s) failed: ${JSON.stringify(r.checks.filter((c) => !c.passed))}`);
                times[cpus].ssh.push(r.sshReadySeconds);
                times[cpus].total.push(r.totalSeconds);
                console.log(`run ${i + 1}, ${cpus} vCPU(s): SSH after ${r.sshReadySeconds.toFixed(0)} s, checks done after ${r.totalSeconds.toFixed(0)} s`);
            }
        }
    } finally {
        delete process.env.IMAGE_FACTORY_TCG_CPUS;
        fs.rmSync(work, { recursive: true, force: true });
    }
    const [two, one] = [median(times["2"].total), median(times["1"].total)];
    console.log(`median to the end of the checks: 2 vCPUs ${two.toFixed(0)} s, 1 vCPU ${one.toFixed(0)} s (SSH ${median(times["2"].ssh).toFixed(0)} s / ${median(times["1"].ssh).toFixed(0)} s); chosen: ${TCG_CPUS}`);
    benchRow("boot gate under TCG, 2 vCPUs vs 1 (median of " + runs + ")", `${two.toFixed(0)} s`, `${one.toFixed(0)} s`, `${(two / one).toFixed(2)}×`, "< 1 keeps 2");
}

main().catch((err: Error) => {
    console.error(err.message);
    process.exit(1);
});
