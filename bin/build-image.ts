// `make image-<name>` / `make <type>`: build (or reuse) images through the same pipeline `pulumi up` runs (build
// key, one streaming sha256, offline validation), without publishing. The stack's config is read from
// Pulumi.yaml and Pulumi.<stack>.yaml (secrets are not needed to build). A Packer or Pi build's base is built
// or fetched first: another image of the factory, or a base-image catalog entry (verified, cached).
//   build-image.ts --stack local --image builder-node
//   build-image.ts --stack local --kind iso
//   build-image.ts --stack local --image debian-12-minimal --version v2026.12.02 --boot --evidence evidence
//     (the runbook's `make image.local.full`: a pinned version, the boot gate, build and validation evidence)
//   build-image.ts --stack dvnt --image builder-node --cache --evidence evidence
//     (`make build.cache`, a CI matrix job: a verified entry of the key in factory:buildCache is used as it is;
//     otherwise the image is built, gated as the stack gates it, and pushed there, signed with the evidence key)
import * as fs from "node:fs";
import * as path from "node:path";
import { ensureImage, lookup, specHash } from "../lib/baseImages/cache";
import { adoptBuild, buildImage, type BuildResult } from "../lib/stages/pipeline";
import { planBuild, withBase } from "../lib/stages/plan";
import { resolveDebianSource } from "../lib/aptSources";
import { resolveAuthorizedKeys, type FactoryConfig } from "../lib/config";
import { stackConfig as readStackConfig } from "../lib/stackFile";
import { gitInfo } from "../lib/git";
import { buildsOnNode, listImageNames, loadRecipe, runbookImageName, type ImageRecipe } from "../lib/recipe";
import { formatReport } from "../lib/validation/offlineChecks";
import { validateArtifact } from "../lib/validation/validateArtifact";
import { assertRunbookVersion, nextVersion } from "../lib/version";
import { bootCheck, bootEvidenceFiles, bootFailure } from "../lib/validation/bootCheck";
import { writeBuildEvidence } from "../lib/evidence/build";
import { evidenceRunDir, signingFromEnv } from "../lib/evidence/packet";
import { writeValidationEvidence } from "../lib/evidence/validation";
import { catalog } from "../images/catalog";
import { parseCli } from "../lib/cli";
import { buildCacheInputOf, buildCacheSettings, entrySourceOf, pushEntry, restoreFromBuildCache, type BuildCacheInput } from "../lib/buildCache";
import { bootReportKey } from "../lib/validation/bootCheck";
import { sha256Hex } from "../lib/sha256";

const projectDir = path.resolve(__dirname, "..");

/** The stack's config from its files (lib/stackFile.ts). */
export function stackConfig(stack: string, dir = projectDir): FactoryConfig {
    return readStackConfig(stack, dir);
}

/** Packer → Proxmox images are built on the lab's node by `pulumi up`, never on this machine. */

function nodeBuiltError(recipe: ImageRecipe): Error {
    return new Error(`${recipe.name} builds on the Proxmox node: run it with pulumi up on a lab stack`);
}

/**
 * The images a `make <kind>` / `make image-<name>` run builds, and those it skips with the reason: a whole kind
 * skips node-built images (one line each) and builds the rest; naming one of them is an error.
 */
export function selectImages(opts: { image?: string; kind?: string }, recipes: ImageRecipe[] = listImageNames().map((n) => loadRecipe(n))): { build: string[]; skipped: Array<{ name: string; why: string }> } {
    if (opts.image) {
        const recipe = recipes.find((r) => r.name === opts.image);
        if (recipe && buildsOnNode(recipe)) throw nodeBuiltError(recipe);
        return { build: [opts.image], skipped: [] };
    }
    const chosen = recipes.filter((r) => !opts.kind || r.kind === opts.kind);
    return {
        build: chosen.filter((r) => !buildsOnNode(r)).map((r) => r.name),
        skipped: chosen.filter(buildsOnNode).map((r) => ({ name: r.name, why: "builds on the Proxmox node (Packer → Proxmox): pulumi up on a lab stack builds it" })),
    };
}

async function main(): Promise<number> {
    const cli = parseCli({ values: ["stack", "kind", "image", "version", "evidence"], flags: ["boot", "cache"],
        usage: "build-image.ts [--stack local] (--image <name> | --kind vm|builder-node|pi|iso) [--version vYYYY.MM.DD] [--boot] [--evidence <dir>] [--cache]" });
    const argValue = (name: "stack" | "kind" | "image" | "version" | "evidence") => cli.value(name);
    const stack = argValue("stack") ?? "local";
    const config = stackConfig(stack);
    const kind = argValue("kind");
    const named = argValue("image");
    const image = named && runbookImageName(named);
    if (named && image !== named) console.log(`${named} is ${image} here (the runbook's name for it)`);
    const { build: names, skipped } = selectImages({ image, kind });
    for (const s of skipped) console.log(`skipping ${s.name}: it ${s.why}`);
    if (names.length === 0) {
        console.error(`no images ${kind ? `of type ${kind}` : ""} (see make list)`);
        return 2;
    }
    const keys = resolveAuthorizedKeys(config.bootstrapUser, projectDir, config.lab);
    const debian = resolveDebianSource(config.debian, true);
    const workDir = path.resolve(projectDir, config.workDir);
    const done: Record<string, BuildResult> = {};
    // The runbook's VERSION=v1 is a local build's version; lab stacks publish only date versions (assertVersion).
    const version = argValue("version") ? assertRunbookVersion(argValue("version") as string) : config.version;
    const useCache = cli.flag("cache");
    const evidenceRoot = argValue("evidence") ? path.resolve(argValue("evidence") as string) : useCache ? path.resolve(projectDir, config.evidence.dir) : undefined;
    const progress = (m: string) => console.log(m);
    // --cache: the stack's build cache, pushed to whatever the stack's push says (that is what the target is for),
    // signed with the evidence key, and the gate the stack's own (the boot where factory:validation boots).
    let cache: BuildCacheInput | undefined;
    const sign = signingFromEnv();
    if (useCache) {
        cache = buildCacheInputOf(config, (p) => path.resolve(projectDir, p), { scratchDir: path.join(workDir, "validate"), evidenceRoot: evidenceRoot as string });
        if (!cache) throw new Error(`stack ${stack} has no factory:buildCache: set {registry, repository, trustedKeys} there (README "The shared build cache")`);
        if (!sign) throw new Error("the build cache's entries are signed with the evidence key: set EVIDENCE_SIGN=1 and EVIDENCE_GPG_KEY=<key id> (EVIDENCE_GPG_PASSPHRASE, GNUPGHOME as needed)");
    }
    const bootOf = (recipe: ImageRecipe) => useCache ? (config.validation.images[recipe.name]?.boot ?? config.validation.boot) : cli.flag("boot");

    const build = async (recipe: ImageRecipe): Promise<BuildResult> => {
        if (done[recipe.name]) return done[recipe.name];
        if (buildsOnNode(recipe)) throw nodeBuiltError(recipe);
        const b = recipe.builder;
        let base: { id: string; version: string; identity: string; path: string; sha256: string } | undefined;
        if (b.kind === "packer" || b.kind === "pi") {
            if ("image" in b.base) {
                const from = await build(loadRecipe(b.base.image));
                base = { id: `image:${b.base.image}`, version: "this-stack", identity: from.buildKey, path: from.path, sha256: from.sha256 };
            } else {
                const spec = lookup(catalog, b.base.catalog, b.base.version);
                const got = await ensureImage(spec, { cacheRoot: path.resolve(projectDir, config.baseImageCache), mirror: config.baseImageMirror ?? process.env.IMAGE_FACTORY_BASE_IMAGE_MIRROR, progress });
                const file = Object.values(got.files)[0];
                base = { id: spec.id, version: spec.version, identity: specHash(spec), path: file.path, sha256: file.sha256 };
            }
        }
        const plan = planBuild({ recipe, projectDir, workDir, bootstrapUser: { name: config.bootstrapUser.name, authorizedKeys: keys }, domain: config.domain, debian,
            versionOverride: version, base: base && { id: base.id, version: base.version, identity: base.identity } });
        const request = base ? withBase(plan.request, base) : plan.request;
        const fullRequest = { ...request, version: version ?? nextVersion(new Date(), []),
            buildInfo: { ...request.buildInfo, buildTime: new Date().toISOString(), git: gitInfo(projectDir) } };
        const pulled = cache?.pull ? await restoreFromBuildCache(cache, { name: recipe.name, buildKey: plan.buildKey, buildsDir: plan.request.buildsDir, versionOverride: version },
            (b, files) => adoptBuild(plan.request.buildsDir, b, files, progress), progress) : undefined;
        if (pulled) {
            console.log(`${recipe.name} ${pulled.result.version}: ${pulled.result.path}\n  sha256 ${pulled.result.sha256}  from the build cache ${pulled.ref}`);
            done[recipe.name] = pulled.result;
            return pulled.result;
        }
        const result = await buildImage(fullRequest, progress);
        const runDir = evidenceRoot && evidenceRunDir(evidenceRoot, recipe.name, result.version, new Date(String(result.buildInfo.buildTime)));
        if (runDir && !result.reused) console.log(`build evidence: ${(await writeBuildEvidence(runDir, fullRequest, result, signingFromEnv())).dir}`);
        const report = await validateArtifact(result.path, { image: recipe.name, version: result.version, bootstrapUser: config.bootstrapUser.name, buildInfo: { buildKey: result.buildKey } },
            { scratch: path.join(workDir, "validate") });
        console.log(formatReport(report));
        const boot = bootOf(recipe);
        const bootable = boot && report.passed && (recipe.kind === "vm" || recipe.kind === "builder-node");
        if (boot && !bootable && report.passed) console.log(`${recipe.name}: no boot check for a ${recipe.kind} image here (offline checks only)`);
        const smoke = path.join(projectDir, "images", recipe.name, "smoke.sh");
        const bootSettings = { hostname: `boot-${recipe.name}`.slice(0, 63), ...(fs.existsSync(smoke) ? { smokeSha256: sha256Hex(fs.readFileSync(smoke)) } : {}) };
        const booted = bootable ? await bootCheck({
            image: result.path, name: recipe.name, user: config.bootstrapUser.name, hostname: bootSettings.hostname,
            workDir: path.join(workDir, "validate", "boots"), log: progress,
            timeoutSeconds: config.validation.images[recipe.name]?.bootTimeoutSeconds ?? config.validation.bootTimeoutSeconds,
            smokeScript: fs.existsSync(smoke) ? smoke : undefined,
        }) : undefined;
        for (const c of booted?.checks ?? []) console.log(`${c.passed ? "PASS" : "FAIL"} ${c.id}: ${c.detail}`);
        let validationEvidence: string | undefined;
        if (runDir) {
            const extra = booted ? bootEvidenceFiles(booted) : [];
            // A reused build's run already holds a validation: this one gets a run of its own.
            const valDir = fs.existsSync(path.join(runDir, "validate")) ? evidenceRunDir(evidenceRoot as string, recipe.name, result.version, new Date()) : runDir;
            validationEvidence = (await writeValidationEvidence(valDir, report, signingFromEnv(), extra)).dir;
            console.log(`validation evidence: ${validationEvidence}`);
        }
        if (!report.passed) throw new Error(`${recipe.name} failed validation (report above)`);
        if (booted && !booted.passed) throw bootFailure(recipe.name, result.version, booted);
        if (cache && sign) {
            const buildEvidence = runDir && fs.existsSync(path.join(runDir, "build")) ? path.join(runDir, "build") : undefined;
            await pushEntry(buildCacheSettings(cache), entrySourceOf(result, {
                passed: true, checksRan: booted ? ["offline", "boot"] : ["offline"], checks: report.checks.map((c) => ({ id: c.id, status: c.status })),
                ...(booted ? { boot: { reportKey: bootReportKey(result.sha256, config.bootstrapUser.name, bootSettings), passed: booted.passed, accelerator: booted.accelerator, totalSeconds: booted.totalSeconds } } : {}),
            }, { build: buildEvidence, validation: validationEvidence }), sign, progress);
        }
        console.log(`${recipe.name} ${result.version}: ${result.path}\n  sha256 ${result.sha256}  ${result.size} bytes  build key ${result.buildKey.slice(0, 16)}${result.reused ? "  (reused)" : ""}`);
        done[recipe.name] = result;
        return result;
    };
    for (const n of names) await build(loadRecipe(n));
    return 0;
}

if (require.main === module) {
    main().then((code) => process.exit(code), (err: Error) => {
        console.error(`build-image: ${err.message}`);
        process.exit(1);
    });
}
