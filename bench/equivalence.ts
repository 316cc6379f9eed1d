// Does this checkout's build code make the same image as another commit's? Builds the local stack's first image
// with each (the other commit's tree from `git archive`, this checkout's node_modules), with a fixed version and
// build time and a shared package cache, and compares the qcow2 sha256 and build keys. The proof an entry of
// EQUIVALENT_REVISIONS (lib/stageRevision.ts) needs.
//   node -r ts-node/register/transpile-only bench/equivalence.ts <commit> [image...]
//   (default debian-12-minimal: two builds, minutes, root; the ISO images need neither root nor a base image)
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
const [workDir, cacheDir, keyFile, image] = process.argv.slice(1);
const config = parseConfig(readNamespace({ "factory:lab": "local", "factory:images": JSON.stringify([image]) }));
const plan = planBuild({ recipe: loadRecipe(image, path.join(root, "images")), projectDir: root, workDir, domain: config.domain,
    debian: resolveDebianSource(config.debian, true), bootstrapUser: { name: "ansible", authorizedKeys: [fs.readFileSync(keyFile, "utf8").trim()] } });
plan.request.cacheDir = cacheDir;
buildImage({ ...plan.request, version: "v2000.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: "fixed", git: { commit: "fixed", dirty: false } } }, () => undefined)
    .then((r) => console.log(JSON.stringify({ sha256: r.sha256, buildKey: r.buildKey, revision: r.buildInfo.builderRevision })), (e) => { console.error(e); process.exit(1); });
`;

async function buildIn(tree: string, work: string, image: string): Promise<{ sha256: string; buildKey: string; revision: string }> {
    const r = await execa("node", ["-r", "ts-node/register/transpile-only", "-e", BUILD_ONE, path.join(work, "w"), path.join(projectDir, ".cache", "cache"),
        path.join(projectDir, ".cache", "local-ssh", "id_ed25519.pub"), image], { cwd: tree, env: { TS_NODE_PROJECT: path.join(tree, "tsconfig.json") } });
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}");
}

async function main(): Promise<void> {
    const [commit, ...named] = process.argv.slice(2);
    if (!commit) throw new Error("usage: bench/equivalence.ts <commit> [image...]");
    const images = named.length ? named : ["debian-12-minimal"];
    const tmp = fs.mkdtempSync(path.join(projectDir, ".cache", "equivalence-"));
    const other = path.join(tmp, "tree");
    fs.mkdirSync(other);
    await execa("bash", ["-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "_", projectDir, commit, other]);
    fs.symlinkSync(path.join(projectDir, "node_modules"), path.join(other, "node_modules"));
    try {
        let same = true;
        for (const image of images) {
            const theirs = await buildIn(other, path.join(tmp, "a"), image);
            const ours = await buildIn(projectDir, path.join(tmp, "b"), image);
            console.log(`${image}:`);
            console.log(`  ${commit.slice(0, 7)}: sha256 ${theirs.sha256}  build key ${theirs.buildKey.slice(0, 16)}  builder revision ${theirs.revision}`);
            console.log(`  this checkout: sha256 ${ours.sha256}  build key ${ours.buildKey.slice(0, 16)}  builder revision ${ours.revision}`);
            console.log(`  same image: ${theirs.sha256 === ours.sha256}; same build key: ${theirs.buildKey === ours.buildKey}`);
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
