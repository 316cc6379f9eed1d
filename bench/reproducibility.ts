// How close do two builds of the same inputs come? Builds the local stack's first image twice into separate
// build directories (sharing only the package cache), then compares the qcow2 digests, the package manifests
// and every file of the two root file systems, and lists what still differs. The first build starts without kept
// image roots and makes them (lib/stages/treeCache.ts); the second starts from the kept minbase tree only (what a
// build does when the package list or a Debian update changed: apt runs); the third unpacks the tree after apt. So
// the comparison is also that of a cache miss with each kind of hit, and the three times are a build from
// mmdebstrap on, one from apt on, and one from the kept trees.
// Run as root with IMAGE_FACTORY_BUILD_USER naming an ordinary user (with /etc/subuid and /etc/subgid ranges), it
// builds a fourth time as that user, from mmdebstrap on like the first (the same package files, copied to the
// user), and compares that image with the root build's, byte for byte, and the two times (issue 35).
//   npm run bench:repro                                  (about 4 minutes; any user with a subordinate id range)
//   IMAGE_FACTORY_BUILD_USER=ifbuild npm run bench:repro (as root: also root against that user, about 6 minutes)
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildResult } from "../lib/stages/pipeline";
import { buildOnce, localConfig, projectDir, userBuild } from "./buildAs";
import { OfflineImage } from "../lib/validation/inspect";
import { loadRecipe } from "../lib/recipe";
import { diffTrees, scanTree } from "../lib/treeDiff";
import { benchRow } from "./row";


/** The same build as another user (root only), from mmdebstrap on, with a copy of the package files. */
async function buildAsUser(user: string, tmp: string, rootCache: string): Promise<{ result: BuildResult; seconds: number }> {
    const u = userBuild(user, tmp, rootCache);
    const t0 = Date.now();
    const { stdout } = await u.start((l) => console.log(l));
    return { result: JSON.parse(stdout) as BuildResult, seconds: (Date.now() - t0) / 1000 };
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
        const t0 = Date.now();
        results.push(await buildOnce(path.join(tmp, run), path.join(projectDir, ".cache", "cache"), run));
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
    const user = process.env.IMAGE_FACTORY_BUILD_USER;
    if (user && process.getuid?.() === 0) {
        const u = await buildAsUser(user, tmp, path.join(projectDir, ".cache", "cache"));
        console.log(`\nroot and ${user} (no root), from mmdebstrap on, the same package files:`);
        console.log(`  qcow2 sha256 equal:        ${u.result.sha256 === a.sha256} (${a.sha256.slice(0, 16)} / ${u.result.sha256.slice(0, 16)})`);
        benchRow(`build ${recipe.name} as ${user} (user namespace) vs as root`, `${u.seconds.toFixed(0)} s`, `${seconds[0].toFixed(0)} s`, `${(u.seconds / seconds[0]).toFixed(3)}×`, "≤ 1.05×");
        benchRow("root and unprivileged builds bit-for-bit equal", String(u.result.sha256 === a.sha256), "—", "—", "true");
    } else if (process.getuid?.() === 0) {
        console.log("\n(IMAGE_FACTORY_BUILD_USER unset: no comparison with a build without root)");
    }
    if (process.env.REPRO_KEEP) console.log(`kept ${a.path}, ${m.path} and ${b.path}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
