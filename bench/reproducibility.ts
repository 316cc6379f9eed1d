// How close do two builds of the same inputs come? Builds the local stack's first image twice into separate
// build directories (sharing only the package cache), then compares the qcow2 digests, the package manifests
// and every file of the two root file systems, and lists what still differs. The first build starts without kept
// image roots and makes them (lib/stages/treeCache.ts); the second starts from the kept minbase tree only (what a
// build does when the package list or a Debian update changed: apt runs); the third unpacks the tree after apt. So
// the comparison is also that of a cache miss with each kind of hit, and the three times are a build from
// mmdebstrap on, one from apt on, and one from the kept trees.
//   npm run bench:repro            (about 4 minutes; needs root, like every rootfs build)
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildImage, type BuildResult } from "../lib/stages/pipeline";
import { planBuild } from "../lib/stages/plan";
import { resolveDebianSource } from "../lib/aptSources";
import { parseConfig, readNamespace, resolveAuthorizedKeys } from "../lib/config";
import { OfflineImage } from "../lib/validation/inspect";
import { loadRecipe } from "../lib/recipe";
import { diffTrees, scanTree } from "../lib/treeDiff";
import { benchRow } from "./row";

const projectDir = path.resolve(__dirname, "..");

function localConfig() {
    const text = fs.readFileSync(path.join(projectDir, "Pulumi.local.yaml"), "utf8");
    // Minimal YAML reading of our own file: the keys we need are plain.
    const images = /factory:images:\n((?:\s+- .+\n)+)/.exec(text)?.[1].split("\n").map((l) => l.replace(/^\s*- /, "").trim()).filter(Boolean) ?? [];
    return parseConfig(readNamespace({ "factory:lab": "local", "factory:images": JSON.stringify(images),
        "factory:bootstrapUser": JSON.stringify({ sshAuthorizedKeyFiles: [".cache/local-ssh/id_ed25519.pub"] }) }));
}

async function main(): Promise<void> {
    const config = localConfig();
    const recipe = loadRecipe(config.images[0]);
    const tmp = fs.mkdtempSync(path.join(path.join(projectDir, ".cache"), "repro-"));
    // Kept trees of this run only (not the per-user ones): the first build makes them, the others unpack them.
    const trees = path.join(tmp, "trees");
    process.env.IMAGE_FACTORY_TREES = trees;
    const results: BuildResult[] = [];
    const seconds: number[] = [];
    const runs = ["a", "m", "b"];
    for (const run of runs) {
        if (run === "m") {
            // The tree after apt is the larger of the two the first build kept: without it, the build unpacks minbase.
            const tars = fs.readdirSync(trees).filter((f) => f.endsWith(".tar")).map((f) => path.join(trees, f));
            if (tars.length !== 2) throw new Error(`the first build kept ${tars.length} trees in ${trees}, not 2 (minbase and packages)`);
            fs.rmSync(tars.sort((x, y) => fs.statSync(y).size - fs.statSync(x).size)[0]);
        }
        const plan = planBuild({
            recipe, projectDir, workDir: path.join(tmp, run), domain: config.domain, debian: resolveDebianSource(config.debian, true),
            bootstrapUser: { name: config.bootstrapUser.name, authorizedKeys: resolveAuthorizedKeys(config.bootstrapUser, projectDir, config.lab) },
        });
        // Share the package cache, and record the same build time, so only the build itself can differ.
        plan.request.cacheDir = path.join(projectDir, ".cache", "cache");
        const t0 = Date.now();
        results.push(await buildImage({ ...plan.request, version: "v2000.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: "fixed" } },
            (m) => console.log(`[${run}] ${m}`)));
        console.log(`[${run}] ${Math.round((Date.now() - t0) / 1000)}s`);
        seconds.push((Date.now() - t0) / 1000);
    }
    const [a, m, b] = results;
    const manifestsEqual = fs.readFileSync(a.pkgManifestPath, "utf8") === fs.readFileSync(b.pkgManifestPath, "utf8");
    const scanned = [];
    for (const r of [a, b]) {
        const img = await OfflineImage.open(r.path);
        const dir = await img.extract("/", fs.mkdtempSync(path.join(tmp, "tree-")));
        scanned.push(scanTree(dir));
        img.close();
    }
    const d = diffTrees(scanned[0], scanned[1]);
    console.log("\nreproducibility of two builds with identical inputs:");
    console.log(`  qcow2 sha256 equal:        ${a.sha256 === b.sha256 && a.sha256 === m.sha256} (${a.sha256.slice(0, 16)} / ${m.sha256.slice(0, 16)} / ${b.sha256.slice(0, 16)})`);
    console.log(`  package manifests equal:   ${manifestsEqual}`);
    console.log(`  file list equal:           ${d.onlyA.length === 0 && d.onlyB.length === 0} (${scanned[0].size} / ${scanned[1].size} paths)`);
    console.log(`  identical paths:           ${d.same}`);
    console.log(`  paths only in a / only b:  ${d.onlyA.length} / ${d.onlyB.length}`);
    console.log(`  paths that differ:         ${d.differing.length}`);
    for (const p of [...d.onlyA.map((x) => `only a: ${x}`), ...d.onlyB.map((x) => `only b: ${x}`), ...d.differing].slice(0, 60)) console.log(`    ${p}`);
    benchRow(`build ${recipe.name}: mmdebstrap and apt (package files cached)`, `${seconds[0].toFixed(0)} s`, "—", "—", "≤ 50 s");
    benchRow(`build ${recipe.name}: minbase tree kept, apt runs (a changed package list or Debian update)`, `${seconds[1].toFixed(0)} s`, "—", "—", "≤ 50 s");
    benchRow(`build ${recipe.name}: image roots kept from an earlier build`, `${seconds[2].toFixed(0)} s`, "—", "—", "≤ 50 s");
    benchRow("three builds bit-for-bit equal", String(a.sha256 === b.sha256 && a.sha256 === m.sha256), "—", "—", "true");
    if (process.env.REPRO_KEEP) console.log(`kept ${a.path}, ${m.path} and ${b.path}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
