// The shared build cache (issue 37) against building: `pulumi up` of a local stack with debian-12-minimal and the
// boot gate, each run in a fresh work directory (another machine's view), alternating:
//   without the cache: build (from the kept image roots, as a warm builder would), boot gate;
//   with the cache:    pull the entry the first run pushed, verify it, gate offline (the entry's boot report stands).
// One more run before them pushes the entry (build, boot, sign, push) and is reported as the cost of sharing.
// Loopback registry with TLS and auth, real gpg, real oras, the real engine.
//   npm run bench:cache          (RUNS=2 by default: about 2 minutes per run without the cache on 2 cores, TCG)
//   BUILD=<builds>/<image>/<key>/result.json npm run bench:cache
//                                also pushes that finished build (e.g. the full builder node's, 1.1 GB) as an entry
//                                and pulls it into a fresh builds directory, against the time its build took.
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { localStack } from "../test/helpers/localStack";
import { adoptBuild, type BuildResult } from "../lib/stages/pipeline";
import { buildCacheSettings, entrySourceOf, pushEntry, restoreFromBuildCache, type BuildCacheInput } from "../lib/buildCache";
import { startRegistry } from "../test/helpers/registry";
import { benchRow } from "./row";

const runs = Number(process.env.RUNS ?? 2);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-bench-cache-"));
    const registry = await startRegistry({ tls: true, auth: { user: "bench", password: "bench-password" } });
    const gnupg = path.join(tmp, "gnupg");
    fs.mkdirSync(gnupg, { mode: 0o700 });
    await execa("gpg", ["--batch", "--passphrase", "", "--quick-generate-key", "bench <bench@test.invalid>", "ed25519", "sign", "never"], { env: { GNUPGHOME: gnupg } });
    const trusted = path.join(tmp, "trusted.asc");
    fs.writeFileSync(trusted, (await execa("gpg", ["--armor", "--export", "bench@test.invalid"], { env: { GNUPGHOME: gnupg } })).stdout);
    const env = { SSL_CERT_FILE: registry.caBundle as string, GHCR_TOKEN: "bench-password", GHCR_USERNAME: "bench", EVIDENCE_SIGN: "1", EVIDENCE_GPG_KEY: "bench@test.invalid", GNUPGHOME: gnupg };
    const cache = (push: boolean): Array<[string, string]> => [["factory:buildCache", JSON.stringify({ registry: registry.host, repository: "bench", pull: true, push, trustedKeys: [trusted] })]];

    /** One `pulumi up` in a fresh project copy and work directory; wall seconds and what it printed. */
    const up = async (config: Array<[string, string]>): Promise<{ seconds: number; out: string }> => {
        const s = await localStack({ env, boot: true, config: [["factory:images", '["debian-12-minimal"]'], ["factory:workDir", fs.mkdtempSync(path.join(tmp, "work-"))], ...config] });
        try {
            const t0 = Date.now();
            const r = await s.project.pulumi(["up", "--stack", "local", "--yes", "--skip-preview"]);
            return { seconds: (Date.now() - t0) / 1000, out: r.stdout };
        } finally {
            await s.close();
        }
    };
    try {
        if (process.env.BUILD) {
            const r = JSON.parse(fs.readFileSync(process.env.BUILD, "utf8")) as BuildResult;
            process.env.SSL_CERT_FILE = registry.caBundle;
            const input: BuildCacheInput = { registry: registry.host, repository: "bench/build-cache", plainHttp: false, username: "bench", password: "bench-password",
                trustedKeys: [fs.readFileSync(trusted, "utf8")], vendor: "deevnet", pull: true, push: true, scratchDir: path.join(tmp, "validate"), evidenceRoot: path.join(tmp, "evidence") };
            let t0 = Date.now();
            await pushEntry(buildCacheSettings(input), entrySourceOf(r, { passed: true, checksRan: ["offline"], checks: [] }), { keyId: "bench@test.invalid", gnupgHome: gnupg }, () => undefined);
            const pushed = (Date.now() - t0) / 1000;
            const builds = path.join(tmp, "builds");
            t0 = Date.now();
            const got = await restoreFromBuildCache(input, { name: r.name, buildKey: r.buildKey, buildsDir: builds }, (b, files) => adoptBuild(builds, b, files), () => undefined);
            const pulled = (Date.now() - t0) / 1000;
            if (got?.result.sha256 !== r.sha256) throw new Error(`the pull of ${r.name} did not give its bytes`);
            benchRow(`${r.name} (${(r.size / 2 ** 30).toFixed(2)} GiB) from the build cache: pull, verify, adopt (loopback TLS registry)`, `${pulled.toFixed(1)} s`,
                `its build ${r.durationSeconds} s`, `${(pulled / r.durationSeconds).toFixed(3)}×`, "—");
            benchRow(`${r.name}: push it as an entry (sign, upload)`, `${pushed.toFixed(1)} s`, `its build ${r.durationSeconds} s`, `${(pushed / r.durationSeconds).toFixed(3)}×`, "—");
            return;
        }
        const seed = await up(cache(true));
        if (!/pushed .*build-cache:debian-12-minimal-/.test(seed.out)) throw new Error(`the first run pushed no entry:\n${seed.out}`);
        const without: number[] = [];
        const withCache: number[] = [];
        let bytes = 0;
        for (let i = 0; i < runs; i++) {
            const built = await up([]);
            if (!/built in /.test(built.out)) throw new Error(`the run without the cache did not build:\n${built.out}`);
            without.push(built.seconds);
            const pulled = await up(cache(false));
            const m = /pulled from the build cache .*?\((v[\d.]+), (\d+) bytes in/.exec(pulled.out);
            if (!m || /built in /.test(pulled.out)) throw new Error(`the run with the cache did not pull, or built:\n${pulled.out}`);
            bytes = Number(m[2]);
            withCache.push(pulled.seconds);
        }
        const a = median(withCache);
        const b = median(without);
        benchRow("local up debian-12-minimal with the boot gate, fresh work dir: from the build cache (pull, verify, offline gate)",
            `${a.toFixed(1)} s (${withCache.map((x) => x.toFixed(1)).join(", ")}), ${(bytes / 2 ** 20).toFixed(1)} MiB pulled`,
            `built here (kept roots) and booted: ${b.toFixed(1)} s (${without.map((x) => x.toFixed(1)).join(", ")})`, `${(a / b).toFixed(2)}×`, "≤ 0.25×");
        benchRow("the same, pushing: build, boot, sign and push the entry", `${seed.seconds.toFixed(1)} s`, `without the cache ${b.toFixed(1)} s`, `${(seed.seconds / b).toFixed(2)}×`, "≤ 1.2×");
    } finally {
        await registry.stop();
        await execa("gpgconf", ["--kill", "gpg-agent"], { env: { GNUPGHOME: gnupg }, reject: false });
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

main().catch((err: Error) => {
    console.error(`bench/buildCache: ${err.message}`);
    process.exit(1);
});
