// Download + SHA-256 of a 1 GiB file over loopback (served by bin/artifact-server in another process): lib/download (hashes while the bytes stream in, one pass)
// against the obvious baseline, `curl -o` followed by `sha256sum` (two passes), and the fast one-pass pipe
// `curl | tee FILE | openssl dgst`, with and without `sync FILE`: ours fsyncs the file before renaming it into
// place (a crash never leaves a whole-looking file of lost bytes), so the like-for-like baseline syncs too.
//   npm run bench:download      (SIZE_MIB=1024, RUNS=3)
import { execFileSync } from "node:child_process";
import execa from "execa";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { benchRow } from "./row";
import { download } from "../lib/baseImages/download";

const root = path.resolve(__dirname, "..");
const sizeMiB = Number(process.env.SIZE_MIB ?? 1024);
const runs = Number(process.env.RUNS ?? 3);
const dir = path.join(root, ".cache", "bench", "download");
const served = path.join(dir, "served");
const file = path.join(served, `blob-${sizeMiB}m.bin`);

async function main(): Promise<void> {
    fs.mkdirSync(served, { recursive: true });
    if (!fs.existsSync(file) || fs.statSync(file).size !== sizeMiB * 2 ** 20) {
        const block = crypto.randomBytes(2 ** 20);
        const fd = fs.openSync(`${file}.partial`, "w");
        for (let i = 0; i < sizeMiB; i++) {
            block.writeUInt32LE(i, 0);
            fs.writeSync(fd, block);
        }
        fs.closeSync(fd);
        fs.renameSync(`${file}.partial`, file);
    }
    const expected = execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0];
    // The server runs in its own process (bin/artifact-server), so it does not share a CPU with the client measured.
    const port = 20000 + Math.floor(Math.random() * 20000);
    const server = execa(process.execPath, ["-r", "ts-node/register/transpile-only", path.join(root, "bin", "artifact-server.ts"), "--root", served, "--port", String(port)],
        { cwd: root, env: { TS_NODE_PROJECT: path.join(root, "tsconfig.json") } });
    for (let i = 0; i < 100; i++) {
        if ((await execa("curl", ["-s", "-o", "/dev/null", `http://127.0.0.1:${port}/healthz`], { reject: false })).exitCode === 0) break;
        await new Promise((r) => setTimeout(r, 100));
    }
    const url = `http://127.0.0.1:${port}/${path.basename(file)}`;
    const out = path.join(dir, "out.bin");
    const ours: number[] = [];
    const base: number[] = [];
    const fast: number[] = [];
    const fastSynced: number[] = [];
    for (let i = 0; i < runs; i++) {
        fs.rmSync(out, { force: true });
        let t0 = process.hrtime.bigint();
        const d = await download({ url, dest: out, expectedSha256: expected });
        ours.push(Number(process.hrtime.bigint() - t0) / 1e9);
        if (d.sha256 !== expected) throw new Error("digest mismatch");
        fs.rmSync(out, { force: true });
        t0 = process.hrtime.bigint();
        // Async: the server runs in this process and must keep serving while curl downloads.
        await execa("curl", ["-s", "-o", out, url]);
        const got = (await execa("sha256sum", [out])).stdout.split(" ")[0];
        base.push(Number(process.hrtime.bigint() - t0) / 1e9);
        if (got !== expected) throw new Error("curl digest mismatch");
        // The fast baseline: one pass, the file written and hashed by OpenSSL as it streams (what ours does).
        fs.rmSync(out, { force: true });
        t0 = process.hrtime.bigint();
        const piped = (await execa("sh", ["-c", `curl -s "${url}" | tee "${out}" | openssl dgst -sha256 -r`])).stdout.split(" ")[0];
        fast.push(Number(process.hrtime.bigint() - t0) / 1e9);
        if (piped !== expected) throw new Error("curl | openssl digest mismatch");
        fs.rmSync(out, { force: true });
        t0 = process.hrtime.bigint();
        const synced = (await execa("sh", ["-c", `curl -s "${url}" | tee "${out}" | openssl dgst -sha256 -r && sync "${out}"`])).stdout.split(" ")[0];
        fastSynced.push(Number(process.hrtime.bigint() - t0) / 1e9);
        if (synced !== expected) throw new Error("curl | openssl && sync digest mismatch");
    }
    server.kill();
    await server.catch(() => undefined);
    fs.rmSync(out, { force: true });
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const gib = sizeMiB / 1024;
    console.log(`download + sha256 of ${sizeMiB} MiB over loopback, median of ${runs} runs:`);
    console.log(`  curl -o && sha256sum:   ${median(base).toFixed(2)} s  (${(gib / median(base)).toFixed(2)} GiB/s)`);
    console.log(`  lib/download (1 pass):  ${median(ours).toFixed(2)} s  (${(gib / median(ours)).toFixed(2)} GiB/s)`);
    console.log(`  curl | tee | openssl dgst: ${median(fast).toFixed(2)} s  (${(gib / median(fast)).toFixed(2)} GiB/s)`);
    console.log(`  curl | tee | openssl dgst && sync: ${median(fastSynced).toFixed(2)} s  (${(gib / median(fastSynced)).toFixed(2)} GiB/s)`);
    benchRow(`download + verify ${sizeMiB} MiB (loopback), file fsynced`, `${median(ours).toFixed(2)} s`,
        `curl | tee | openssl && sync ${median(fastSynced).toFixed(2)} s; without sync ${median(fast).toFixed(2)} s; curl -o && sha256sum ${median(base).toFixed(2)} s`,
        `${(median(ours) / median(fastSynced)).toFixed(2)}× (${(median(ours) / median(fast)).toFixed(2)}× without sync)`, "≤ 1.05×");
    console.log(`  ratio ours/curl -o && sha256sum: ${(median(ours) / median(base)).toFixed(2)}x time`);
    console.log(`  ratio ours/curl | tee | openssl && sync: ${(median(ours) / median(fastSynced)).toFixed(2)}x time (goal: within 5 %)`);
    console.log(`  ratio ours/curl | tee | openssl (no sync): ${(median(ours) / median(fast)).toFixed(2)}x time`);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
