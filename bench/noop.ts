// A no-op `pulumi up` and `pulumi preview` of the local stack (one image, pushed to a loopback registry, nothing to
// do) against the engine's floor: the same commands on a one-dynamic-resource TypeScript program
// (test/fixtures/dynamic-provider), measured in the same run, alternating, so load on the machine hits both.
//   npm run bench:noop        (RUNS=5 by default; the first up of the local stack builds the image, or reuses
//                              the tests' build in .cache/test-work when its key matches)
// Prints the medians, the ratios, and the CPU seconds (user+sys of the whole process tree) of each.
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";

process.env.IMAGE_FACTORY_TEST_KEEP_BUILDS = "1";
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded after the env var above is set
const { localStack } = require("../test/helpers/localStack") as typeof import("../test/helpers/localStack");
import { TestProject } from "../test/helpers/project";
import { startRegistry } from "../test/helpers/registry";
import { REPO_ROOT } from "../test/helpers/setup";
import { benchRow } from "./row";

const runs = Number(process.env.RUNS ?? 5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Sample { wall: number; cpu: number }

/**
 * Runs `pulumi <args>` in dir under /usr/bin/time; wall and CPU seconds of the whole tree. Async on purpose: the
 * stack's artifact server runs in this process and must keep answering while pulumi runs.
 */
async function timed(dir: string, env: Record<string, string>, args: string[]): Promise<Sample> {
    const r = await execa("/usr/bin/time", ["-f", "%e %U %S", "pulumi", ...args, "--non-interactive"], { cwd: dir, env, reject: false });
    if (r.exitCode !== 0) throw new Error(`pulumi ${args.join(" ")} failed in ${dir}:\n${r.stdout}\n${r.stderr}`);
    const last = r.stderr.trim().split("\n").pop() ?? "";
    const [wall, user, sys] = last.split(" ").map(Number);
    if ((args[0] === "up" && !/\b\d+ unchanged\b/.test(r.stdout)) || /\b\d+ (to create|to update|created|updated)\b/.test(r.stdout)) {
        throw new Error(`pulumi ${args.join(" ")} was not a no-op in ${dir}:\n${r.stdout}`);
    }
    return { wall, cpu: user + sys };
}

async function main(): Promise<void> {
    const registry = await startRegistry();
    const local = await localStack({ config: [["factory:oci", JSON.stringify({ registry: registry.host, repository: "bench", plainHttp: true, tags: ["latest"] })]] });
    const floor = TestProject.create({ from: path.join(REPO_ROOT, "test", "fixtures", "dynamic-provider"), entries: ["Pulumi.yaml", "index.ts", "tsconfig.json", "package.json"] });
    try {
        await floor.initStack("bench");
        await floor.setConfig("bench", "fixture:path", path.join(floor.dir, "owned.txt"));
        await floor.setConfig("bench", "fixture:content", "bench");
        const setup = [
            ["local", local.project.dir, local.project.env, "local"],
            ["floor", floor.dir, floor.env, "bench"],
        ] as const;
        for (const [name, dir, env, stack] of setup) {
            const t0 = Date.now();
            const r = await execa("pulumi", ["up", "--yes", "--skip-preview", "--stack", stack, "--non-interactive"], { cwd: dir, env, reject: false });
            if (r.exitCode !== 0) throw new Error(`first up of ${name} failed:\n${r.stdout}\n${r.stderr}`);
            const resources = /(\d+) (created|unchanged)/g;
            console.error(`bench: first up of ${name}: ${((Date.now() - t0) / 1000).toFixed(0)} s (${[...r.stdout.matchAll(resources)].map((m) => m[0]).join(", ")})`);
        }
        const samples: Record<string, Sample[]> = {};
        const add = (k: string, s: Sample) => (samples[k] ??= []).push(s);
        for (let i = 0; i < runs; i++) {
            for (const [name, dir, env, stack] of setup) {
                add(`${name} up`, await timed(dir, env, ["up", "--yes", "--skip-preview", "--stack", stack]));
                add(`${name} preview`, await timed(dir, env, ["preview", "--stack", stack]));
            }
        }
        const state = JSON.parse((await execa("pulumi", ["stack", "export", "--stack", "local"], { cwd: local.project.dir, env: local.project.env })).stdout) as { deployment: { resources: unknown[] } };
        const rows = ["up", "preview"].map((cmd) => {
            const ours = samples[`local ${cmd}`];
            const base = samples[`floor ${cmd}`];
            const [ow, bw] = [median(ours.map((s) => s.wall)), median(base.map((s) => s.wall))];
            const [oc, bc] = [median(ours.map((s) => s.cpu)), median(base.map((s) => s.cpu))];
            return `| no-op ${cmd} | local stack (${state.deployment.resources.length} resources) | ${ow.toFixed(2)} s (${oc.toFixed(1)} CPU-s) | one dynamic resource | ${bw.toFixed(2)} s (${bc.toFixed(1)} CPU-s) | ${(ow / bw).toFixed(2)}× |`;
        });
        console.log(`no-op runs, median of ${runs} (alternating with the floor), state ${(fs.statSync(path.join(local.project.backend, ".pulumi", "stacks", "image-factory", "local.json")).size / 1024).toFixed(0)} KiB`);
        console.log("| bench | ours | | baseline | | ratio |\n|---|---|---|---|---|---|");
        for (const row of rows) console.log(row);
        for (const cmd of ["up", "preview"]) {
            const [o, b] = [median(samples[`local ${cmd}`].map((s) => s.wall)), median(samples[`floor ${cmd}`].map((s) => s.wall))];
            benchRow(`no-op ${cmd}, local stack`, `${o.toFixed(2)} s`, `one dynamic resource ${b.toFixed(2)} s`, `${(o / b).toFixed(2)}×`, "≤ 1.5×");
        }
    } finally {
        await local.close();
        floor.remove();
        await registry.stop();
    }
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
