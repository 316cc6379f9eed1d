// `npm run bench`: every bench in turn, then one table of their results (the README's Performance section shows
// the latest, with the machine it ran on). Each bench's own report is printed as it runs.
import execa from "execa";
import * as os from "node:os";

const BENCHES = ["bench:hash", "bench:download", "bench:upload", "bench:noop", "bench:repro"];

async function main(): Promise<void> {
    const rows: string[][] = [];
    for (const name of BENCHES) {
        console.log(`\n=== npm run ${name}`);
        const r = await execa("npm", ["run", "-s", name], { all: true, reject: false });
        for (const line of (r.all ?? "").split("\n")) {
            if (line.startsWith("BENCH\t")) rows.push(line.split("\t").slice(1));
            else console.log(line);
        }
        if (r.exitCode !== 0) rows.push([name, "failed", `exit ${r.exitCode}`, "", ""]);
    }
    const cpu = os.cpus()[0]?.model ?? "unknown CPU";
    console.log(`\n${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}`);
    console.log("| bench | ours | baseline | ratio | goal |\n|---|---|---|---|---|");
    // A pipe inside a cell (a shell pipeline baseline) would end the cell.
    for (const r of rows) console.log(`| ${r.map((c) => c.replace(/\|/g, "\\|")).join(" | ")} |`);
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
