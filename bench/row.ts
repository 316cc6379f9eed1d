// One line per measured result, which `npm run bench` (bench/all.ts) gathers into the table the README shows.
export function benchRow(bench: string, ours: string, baseline: string, ratio: string, goal: string): void {
    console.log(`BENCH\t${bench}\t${ours}\t${baseline}\t${ratio}\t${goal}`);
}
