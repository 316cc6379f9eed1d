// Publishing bytes: what a push of a SIZE_MIB artifact sends to a loopback OCI registry (Debian's docker-registry
// behind our counting TCP proxy), a re-push of the same bytes (goal: 0 blob bytes), and a changed artifact (sent
// again, streamed: peak RSS of the pushing process tree stays far below the file size). Baseline: `oras push` by
// hand, the same file, measured in the same run. Then the same three steps for a GitHub release asset against the
// loopback fake GitHub (bytes counted by the fake as it receives them); baseline `curl --data-binary` to the same
// upload endpoint.
//   npm run bench:upload      (SIZE_MIB=256 by default)
import execa from "execa";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { orasBinary } from "../lib/publish/oci";
import { benchRow } from "./row";
import { startCutProxy } from "../test/helpers/cutProxy";
import { startFakeGithub, type FakeGithub } from "../test/helpers/fakeGithub";
import { startRegistry } from "../test/helpers/registry";

const root = path.resolve(__dirname, "..");
const sizeMiB = Number(process.env.SIZE_MIB ?? 256);
const MEDIA = "application/vnd.deevnet.qcow2";

function makeFile(file: string, seed: number): string {
    const hash = crypto.createHash("sha256");
    const block = crypto.randomBytes(2 ** 20);
    const fd = fs.openSync(file, "w");
    for (let i = 0; i < sizeMiB; i++) {
        block.writeUInt32LE(i, 0);
        block.writeUInt32LE(seed, 4);
        fs.writeSync(fd, block);
        hash.update(block);
    }
    fs.closeSync(fd);
    return hash.digest("hex");
}

// The push runs in a child under /usr/bin/time, so its peak RSS (with oras's, the larger of the two) is measured.
const child = `
const { pushArtifact } = require(${JSON.stringify(path.join(root, "lib", "publish", "oci.ts"))});
const [file, sha, registry] = process.argv.slice(1);
const t0 = process.hrtime.bigint();
pushArtifact({ target: { registry, repository: "bench", plainHttp: true }, file, tags: ["latest"], artifactType: "${MEDIA}", mediaType: "${MEDIA}", annotations: {} }, sha)
  .then((r) => process.stdout.write(JSON.stringify({ uploaded: r.uploaded, seconds: Number(process.hrtime.bigint() - t0) / 1e9 })));`;

// A release asset upload the way the GithubReleaseUpload provider does it (lib/publish/github uploadAsset), in a child
// for its peak RSS; the token comes in the environment, as the provider's does.
const githubChild = `
const { githubClient, ensureRelease, uploadAsset } = require(${JSON.stringify(path.join(root, "lib", "publish", "github.ts"))});
const [file, sha, api] = process.argv.slice(1);
const gh = githubClient({ token: process.env.BENCH_GITHUB_TOKEN, baseUrl: api });
const repo = { owner: "bench", repo: "images" };
const t0 = process.hrtime.bigint();
ensureRelease(gh, repo, "v2026.01.01", { name: "bench", body: "" })
  .then(({ release }) => uploadAsset(gh, repo, release, file, "image.qcow2", sha, "application/octet-stream"))
  .then(() => process.stdout.write(JSON.stringify({ seconds: Number(process.hrtime.bigint() - t0) / 1e9 })));`;

async function ourUpload(file: string, sha: string, gh: FakeGithub): Promise<{ seconds: number; maxRssMiB: number }> {
    const r = await execa("/usr/bin/time", ["-f", "%M", process.execPath, "-r", "ts-node/register/transpile-only", "-e", githubChild, file, sha, gh.url], {
        cwd: root, env: { TS_NODE_PROJECT: path.join(root, "tsconfig.json"), BENCH_GITHUB_TOKEN: gh.token },
    });
    const rssKiB = Number(r.stderr.trim().split("\n").pop());
    return { ...(JSON.parse(r.stdout) as { seconds: number }), maxRssMiB: rssKiB / 1024 };
}

/** The baseline: curl posting the file to the release's upload endpoint (headers from a file: no token in argv). */
async function curlUpload(file: string, gh: FakeGithub, dir: string): Promise<number> {
    const headers = path.join(dir, "curl-headers");
    fs.writeFileSync(headers, `Authorization: Bearer ${gh.token}\nContent-Type: application/octet-stream\n`, { mode: 0o600 });
    const release = gh.releases("bench", "images")[0];
    const t0 = process.hrtime.bigint();
    await execa("curl", ["-sSf", "-o", "/dev/null", "-H", `@${headers}`, "--data-binary", `@${file}`,
        `${gh.url}/uploads/repos/bench/images/releases/${release.id}/assets?name=baseline.qcow2`]);
    return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function githubSteps(a: string, shaA: string, b: string, shaB: string, dir: string): Promise<void> {
    const gh = await startFakeGithub({ token: "ghp_" + "BenchToken0123456789abcdefABCDEFabcd", repos: [["bench", "images"]] });
    const MiB = (n: number) => (n / 2 ** 20).toFixed(1);
    const received = () => gh.requests.filter((q) => q.path.startsWith("/uploads/")).reduce((n, q) => n + q.bytes, 0);
    try {
        const rows: string[] = [];
        const sent: Record<string, { bytes: number; seconds: number; rss?: number }> = {};
        const step = async (name: string, run: () => Promise<{ seconds: number; maxRssMiB?: number }>) => {
            const before = received();
            const r = await run();
            sent[name] = { bytes: received() - before, seconds: r.seconds, rss: r.maxRssMiB };
            rows.push(`| ${name} | ${MiB(received() - before)} MiB | ${r.seconds.toFixed(2)} s | ${r.maxRssMiB !== undefined ? `${r.maxRssMiB.toFixed(0)} MiB` : "—"} |`);
        };
        await step("first upload (lib/publish/github uploadAsset)", () => ourUpload(a, shaA, gh));
        await step("curl --data-binary (baseline)", async () => ({ seconds: await curlUpload(a, gh, dir) }));
        await step("re-upload, same bytes", () => ourUpload(a, shaA, gh));
        await step("upload of a changed image", () => ourUpload(b, shaB, gh));
        console.log(`\nGitHub release asset upload of a ${sizeMiB} MiB artifact to the loopback fake GitHub; bytes counted as the fake receives them`);
        console.log("| step | bytes sent | time | peak RSS (node) |\n|---|---|---|---|");
        for (const row of rows) console.log(row);
        const first = sent["first upload (lib/publish/github uploadAsset)"];
        const base = sent["curl --data-binary (baseline)"];
        const again = sent["re-upload, same bytes"];
        const changed = sent["upload of a changed image"];
        benchRow(`GitHub asset upload ${sizeMiB} MiB`, `${first.seconds.toFixed(2)} s, peak RSS ${first.rss?.toFixed(0)} MiB`, `curl ${base.seconds.toFixed(2)} s`,
            `${(first.seconds / base.seconds).toFixed(2)}×`, "streamed (RSS ≪ file)");
        benchRow("GitHub re-upload, unchanged", `${MiB(again.bytes)} MiB sent`, `${MiB(first.bytes)} MiB first time`, "—", "0 bytes");
        benchRow("GitHub upload, changed", `${MiB(changed.bytes)} MiB sent, peak RSS ${changed.rss?.toFixed(0)} MiB`, `${sizeMiB} MiB file`, "—", "file once, streamed");
    } finally {
        await gh.close();
    }
}

// Async children only: the counting proxy runs in this process and must keep forwarding meanwhile.
async function ours(file: string, sha: string, registry: string): Promise<{ uploaded: boolean; seconds: number; maxRssMiB: number }> {
    const r = await execa("/usr/bin/time", ["-f", "%M", process.execPath, "-r", "ts-node/register/transpile-only", "-e", child, file, sha, registry], {
        cwd: root, env: { TS_NODE_PROJECT: path.join(root, "tsconfig.json") },
    });
    const rssKiB = Number(r.stderr.trim().split("\n").pop());
    return { ...(JSON.parse(r.stdout) as { uploaded: boolean; seconds: number }), maxRssMiB: rssKiB / 1024 };
}

async function orasByHand(file: string, registry: string): Promise<number> {
    const t0 = process.hrtime.bigint();
    await execa(orasBinary(), ["push", "--plain-http", "--no-tty", "--artifact-type", MEDIA, `${registry}/baseline:latest`, `${path.basename(file)}:${MEDIA}`],
        { cwd: path.dirname(file) });
    return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function main(): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-bench-upload-"));
    const registry = await startRegistry();
    const [host, port] = registry.host.split(":");
    const proxy = await startCutProxy({ host, port: Number(port) });
    const via = `127.0.0.1:${proxy.port}`;
    const MiB = (n: number) => (n / 2 ** 20).toFixed(1);
    try {
        const a = path.join(dir, "image-a.qcow2");
        const b = path.join(dir, "image-b.qcow2");
        const shaA = makeFile(a, 1);
        const shaB = makeFile(b, 2);
        const rows: string[] = [];
        const sent: Record<string, { bytes: number; seconds: number; rss?: number }> = {};
        const step = async (name: string, run: () => Promise<{ uploaded?: boolean; seconds: number; maxRssMiB?: number }>) => {
            const before = proxy.up;
            const r = await run();
            sent[name] = { bytes: proxy.up - before, seconds: r.seconds, rss: r.maxRssMiB };
            rows.push(`| ${name} | ${MiB(proxy.up - before)} MiB | ${r.seconds.toFixed(2)} s | ${r.maxRssMiB !== undefined ? `${r.maxRssMiB.toFixed(0)} MiB` : "—"} |`);
        };
        await step("oras push by hand (baseline)", async () => ({ seconds: await orasByHand(a, via) }));
        await step("first push (lib/oci pushArtifact)", () => ours(a, shaA, via));
        await step("re-push, same bytes", () => ours(a, shaA, via));
        // A new build under the same name: other bytes, other digest (a copy: the GitHub steps use both files).
        fs.copyFileSync(a, `${a}.first`);
        fs.copyFileSync(b, a);
        await step("push of a changed image", () => ours(a, shaB, via));
        console.log(`OCI push of a ${sizeMiB} MiB artifact to a loopback registry; bytes counted client → registry at a TCP proxy`);
        console.log("| step | bytes sent | time | peak RSS (node + oras) |\n|---|---|---|---|");
        for (const row of rows) console.log(row);
        const first = sent["first push (lib/oci pushArtifact)"];
        const base = sent["oras push by hand (baseline)"];
        const again = sent["re-push, same bytes"];
        benchRow(`OCI push ${sizeMiB} MiB`, `${first.seconds.toFixed(2)} s, peak RSS ${first.rss?.toFixed(0)} MiB`, `oras push ${base.seconds.toFixed(2)} s`,
            `${(first.seconds / base.seconds).toFixed(2)}×`, "streamed (RSS ≪ file)");
        benchRow("OCI re-push, unchanged", `${MiB(again.bytes)} MiB sent`, `${MiB(first.bytes)} MiB first time`, "—", "0 blob bytes");
        await githubSteps(`${a}.first`, shaA, b, shaB, dir);
    } finally {
        await proxy.close();
        await registry.stop();
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
