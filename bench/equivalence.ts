// Does this checkout's build code make the same image as another commit's? Builds the local stack's first image
// with each (the other commit's tree from `git archive`, this checkout's node_modules), with a fixed version and
// build time and a shared package cache, and compares the qcow2 sha256 and build keys. The proof an entry of
// EQUIVALENT_REVISIONS (lib/stageRevision.ts) needs, and what one builder change costs: each build's seconds and
// their ratio.
//   npm run bench:equivalence -- <commit> [--runs N] [--as <user>] [--base <raw disk>] [image...]
//   (default debian-12-minimal. --as: this checkout's builds run as that ordinary user (run as root), the other
//   commit's as the caller: issue 35's "no slower than the root build". --base: the base image of a pi recipe, e.g.
//   the Pi tests' fixture under ~/.cache/image-factory/fixtures. --runs: alternate that many pairs; medians.)
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";

const projectDir = path.resolve(__dirname, "..");

// Runs inside a tree: plans and builds with that tree's own code (lib/stages, or lib/build before issue 21).
const BUILD_ONE = `
const fs = require("node:fs"), path = require("node:path");
const root = process.cwd();
const stages = fs.existsSync(path.join(root, "lib", "stages")) ? "lib/stages" : "lib/build";
const { planBuild } = require(path.join(root, stages, "plan"));
const { buildImage } = require(path.join(root, stages, "pipeline"));
const { resolveDebianSource } = require(path.join(root, "lib", "aptSources"));
const { loadRecipe } = require(path.join(root, "lib", "recipe"));
const { parseConfig, readNamespace } = require(path.join(root, "lib", "config"));
const [workDir, cacheDir, keyFile, image, basePath, baseSha] = process.argv.slice(1);
const config = parseConfig(readNamespace({ "factory:lab": "local", "factory:images": JSON.stringify([image]) }));
const plan = planBuild({ recipe: loadRecipe(image, path.join(root, "images")), projectDir: root, workDir, domain: config.domain,
    debian: resolveDebianSource(config.debian, true), bootstrapUser: { name: "ansible", authorizedKeys: [fs.readFileSync(keyFile, "utf8").trim()] },
    ...(basePath ? { base: { id: "bench-base", version: "bench", identity: baseSha } } : {}) });
const request = basePath ? require(path.join(root, stages, "plan")).withBase(plan.request, { path: basePath, sha256: baseSha }) : plan.request;
request.cacheDir = cacheDir;
const t0 = Date.now();
buildImage({ ...request, version: "v2000.01.01", buildInfo: { ...request.buildInfo, buildTime: "fixed", git: { commit: "fixed", dirty: false } } }, () => undefined)
    .then((r) => console.log(JSON.stringify({ sha256: r.sha256, buildKey: r.buildKey, revision: r.buildInfo.builderRevision, seconds: (Date.now() - t0) / 1000 })), (e) => { console.error(e); process.exit(1); });
`;

interface Built { sha256: string; buildKey: string; revision: string; seconds: number }
interface Base { path: string; sha256: string }

/** Its own directory, cache and home for a build as another user (the caller is root). */
function asUser(user: string, dir: string): { argv: string[]; env: Record<string, string>; cache: string } {
    const uid = Number(execa.sync("id", ["-u", user]).stdout.trim());
    const gid = Number(execa.sync("id", ["-g", user]).stdout.trim());
    const home = path.join(dir, "home");
    const cache = path.join(dir, "cache");
    for (const d of [dir, home, cache]) {
        fs.mkdirSync(d, { recursive: true });
        fs.chownSync(d, uid, gid);
    }
    return {
        argv: ["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "--"],
        env: { HOME: home, USER: user, LOGNAME: user, IMAGE_FACTORY_CACHE: path.join(home, "factory-cache"), IMAGE_FACTORY_TREES: "off" },
        cache,
    };
}

async function buildIn(tree: string, work: string, image: string, o: { user?: string; base?: Base } = {}): Promise<Built> {
    fs.rmSync(work, { recursive: true, force: true });
    fs.mkdirSync(work, { recursive: true });
    const as = o.user ? asUser(o.user, work) : undefined;
    const cache = as?.cache ?? path.join(projectDir, ".cache", "cache");
    const argv = [...(as?.argv ?? []), process.execPath, "-r", "ts-node/register/transpile-only", "-e", BUILD_ONE, path.join(work, "w"), cache,
        path.join(projectDir, ".cache", "local-ssh", "id_ed25519.pub"), image, ...(o.base ? [o.base.path, o.base.sha256] : [])];
    const r = await execa(argv[0], argv.slice(1), { cwd: tree, env: { TS_NODE_PROJECT: path.join(tree, "tsconfig.json"), ...as?.env } });
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}") as Built;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
    const args = process.argv.slice(2);
    const option = (name: string) => {
        const i = args.indexOf(name);
        return i < 0 ? undefined : args.splice(i, 2)[1];
    };
    const runs = Number(option("--runs") ?? 1);
    const user = option("--as");
    const basePath = option("--base");
    const [commit, ...named] = args;
    if (!commit) throw new Error("usage: bench/equivalence.ts <commit> [--runs N] [--as <user>] [--base <raw disk>] [image...]");
    if (user && process.getuid?.() !== 0) throw new Error("--as needs root (it drops to the user with setpriv)");
    const base = basePath ? { path: path.resolve(basePath), sha256: (await execa("sha256sum", [basePath])).stdout.split(" ")[0] } : undefined;
    const images = named.length ? named : ["debian-12-minimal"];
    const tmp = fs.mkdtempSync(path.join(projectDir, ".cache", "equivalence-"));
    fs.chmodSync(tmp, 0o755); // a build as --as user passes through it
    const other = path.join(tmp, "tree");
    fs.mkdirSync(other);
    await execa("bash", ["-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "_", projectDir, commit, other]);
    fs.symlinkSync(path.join(projectDir, "node_modules"), path.join(other, "node_modules"));
    try {
        let same = true;
        for (const image of images) {
            const times: { theirs: number[]; ours: number[] } = { theirs: [], ours: [] };
            let theirs: Built | undefined;
            let ours: Built | undefined;
            // Alternating, so that a machine getting slower or faster during the run weighs on both alike.
            for (let i = 0; i < runs; i++) {
                theirs = await buildIn(other, path.join(tmp, "a"), image, { base });
                ours = await buildIn(projectDir, path.join(tmp, "b"), image, { user, base });
                times.theirs.push(theirs.seconds);
                times.ours.push(ours.seconds);
            }
            if (!theirs || !ours) throw new Error("--runs must be at least 1");
            const who = user ? ` as ${user}` : "";
            console.log(`${image}:`);
            console.log(`  ${commit.slice(0, 7)}: sha256 ${theirs.sha256}  build key ${theirs.buildKey.slice(0, 16)}  builder revision ${theirs.revision}  ${times.theirs.map((t) => `${t.toFixed(1)}s`).join(" ")}`);
            console.log(`  this checkout${who}: sha256 ${ours.sha256}  build key ${ours.buildKey.slice(0, 16)}  builder revision ${ours.revision}  ${times.ours.map((t) => `${t.toFixed(1)}s`).join(" ")}`);
            console.log(`  same image: ${theirs.sha256 === ours.sha256}; same build key: ${theirs.buildKey === ours.buildKey}`);
            console.log(`  build time, median of ${runs}: ${median(times.theirs).toFixed(1)} s → ${median(times.ours).toFixed(1)} s${who} (ratio ${(median(times.ours) / median(times.theirs)).toFixed(2)}×)`);
            same &&= theirs.sha256 === ours.sha256 && theirs.buildKey === ours.buildKey;
        }
        process.exitCode = same ? 0 : 1;
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

main().catch((e: Error) => {
    console.error(`equivalence: ${e.message}`);
    process.exit(1);
});
