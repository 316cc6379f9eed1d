// Streaming SHA-256 of a 1 GiB file: lib/sha256.hashFile against `sha256sum`, and the peak memory of hashing.
//   npm run bench:hash      (SIZE_MIB=1024 by default; the file is made once under .cache/bench/)
import { execFileSync, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { benchRow } from "./row";

const root = path.resolve(__dirname, "..");
const sizeMiB = Number(process.env.SIZE_MIB ?? 1024);
const runs = Number(process.env.RUNS ?? 3);
const file = path.join(root, ".cache", "bench", `blob-${sizeMiB}m.bin`);

function makeFile(): void {
    if (fs.existsSync(file) && fs.statSync(file).size === sizeMiB * 2 ** 20) return;
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const block = crypto.randomBytes(2 ** 20);
    const fd = fs.openSync(`${file}.partial`, "w");
    for (let i = 0; i < sizeMiB; i++) {
        block.writeUInt32LE(i, 0); // every MiB differs
        fs.writeSync(fd, block);
    }
    fs.closeSync(fd);
    fs.renameSync(`${file}.partial`, file);
}

function time(fn: () => string): { seconds: number; out: string } {
    const t0 = process.hrtime.bigint();
    const out = fn();
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, out };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// The measured hash runs in a child process so its peak RSS is its own.
const child = `
const { hashFile } = require(${JSON.stringify(path.join(root, "lib", "sha256.ts"))});
const t0 = process.hrtime.bigint();
hashFile(process.argv[1]).then((d) => {
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify({ sha256: d.sha256, seconds: s, maxRssKiB: process.resourceUsage().maxRSS }));
});`;

function ours(): { sha256: string; seconds: number; maxRssKiB: number } {
    const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", child, file], {
        cwd: root, encoding: "utf8", env: { ...process.env, TS_NODE_PROJECT: path.join(root, "tsconfig.json") },
    });
    if (r.status !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as { sha256: string; seconds: number; maxRssKiB: number };
}

function idleNodeRss(): number {
    const r = spawnSync(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", `require(${JSON.stringify(path.join(root, "lib", "sha256.ts"))}); process.stdout.write(String(process.resourceUsage().maxRSS))`], {
        cwd: root, encoding: "utf8", env: { ...process.env, TS_NODE_PROJECT: path.join(root, "tsconfig.json") },
    });
    return Number(r.stdout);
}

makeFile();
execFileSync("sha256sum", [file]); // warm the page cache so both sides read from memory
const base: number[] = [];
const ssl: number[] = [];
const mine: number[] = [];
let rss = 0;
let agree = true;
for (let i = 0; i < runs; i++) {
    const b = time(() => execFileSync("sha256sum", [file], { encoding: "utf8" }));
    base.push(b.seconds);
    const o2 = time(() => execFileSync("openssl", ["dgst", "-sha256", "-r", file], { encoding: "utf8" }));
    ssl.push(o2.seconds);
    agree &&= o2.out.split(" ")[0] === b.out.split(" ")[0];
    const o = ours();
    mine.push(o.seconds);
    rss = Math.max(rss, o.maxRssKiB);
    agree &&= b.out.split(" ")[0] === o.sha256;
}
const idle = idleNodeRss();
const gib = sizeMiB / 1024;
console.log(`hashing ${sizeMiB} MiB (page cache warm), median of ${runs} runs:`);
console.log(`  sha256sum:            ${median(base).toFixed(2)} s  (${(gib / median(base)).toFixed(2)} GiB/s)`);
console.log(`  lib/sha256.hashFile:  ${median(mine).toFixed(2)} s  (${(gib / median(mine)).toFixed(2)} GiB/s)`);
console.log(`  openssl dgst -sha256: ${median(ssl).toFixed(2)} s  (${(gib / median(ssl)).toFixed(2)} GiB/s)`);
console.log(`  ratio ours/sha256sum: ${(median(mine) / median(base)).toFixed(2)}x time   (digests agree: ${agree})`);
console.log(`  ratio ours/openssl:   ${(median(mine) / median(ssl)).toFixed(2)}x time   (goal: within 5 %)`);
benchRow(`sha256 of ${sizeMiB} MiB (page cache)`, `${median(mine).toFixed(2)} s, ${(rss / 1024).toFixed(0)} MiB RSS`, `openssl dgst ${median(ssl).toFixed(2)} s; sha256sum ${median(base).toFixed(2)} s`,
    `${(median(mine) / median(ssl)).toFixed(2)}× openssl`, "≤ 1.05× openssl");
console.log(`  peak RSS while hashing: ${(rss / 1024).toFixed(1)} MiB (node + ts-node alone: ${(idle / 1024).toFixed(1)} MiB; file: ${sizeMiB} MiB)`);
