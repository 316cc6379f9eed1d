// Dynamic provider: one content-addressed image build. The engine only calls create when the build key (or
// the pinned version) changed, so an unchanged image costs nothing on `pulumi up`: no build, no re-hash.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import { adoptBuild, buildImage, pruneBuilds, verifiedCachedResult, type BuildResult, type PlannedRequest } from "../lib/stages/pipeline";
import { restoreFromBuildCache, type BuildCacheInput } from "../lib/buildCache";
import { buildInfoSchema, type BuildInfo } from "../lib/contract";
import { hashFile } from "../lib/sha256";
import { writeBuildEvidence } from "../lib/evidence/build";
import { evidenceRunDir } from "../lib/evidence/packet";
import { gitInfo } from "../lib/git";
import { readVersionLedger, recordVersion } from "../lib/publish/store";
import { assertVersion, nextVersion } from "../lib/version";
import {changedKeys, dynamicResource, keyedDiff } from "./dynamic";
import type { EvidenceSettings } from "./imageValidation";
import { engineReporter } from "./progress";

export interface ImageBuildInputs {
    name: string;
    buildKey: string;
    request: PlannedRequest;
    /** factory:version, when the stack pins one. */
    versionOverride?: string;
    /** Store root: versions already published there by other builds are not reused. */
    storeRoot: string;
    /** Checkout the build reads; its commit is recorded in build.json when the build runs. */
    projectDir: string;
    /** URN of this resource, so progress lines attach to it in `pulumi up`. */
    logUrn?: string;
    /** Where the build's evidence packet goes (and how it is signed). Never copied into the outputs. */
    evidence: EvidenceSettings;
    /** factory:buildCache when it pulls: a verified entry of this key is used instead of a build. Secret (the password). */
    buildCache?: BuildCacheInput;
}

/**
 * fileMtimeMs: the artifact's modification time when this resource last saw it; a write behind our back (a flipped
 * byte keeps the size) changes it, and the next diff notices without re-hashing.
 */
export type ImageBuildOutputs = Omit<ImageBuildInputs, "evidence" | "buildCache"> & Omit<BuildResult, "buildInfo"> & {
    buildInfo: BuildInfo; evidencePath?: string; fileMtimeMs?: number;
    /** The build-cache entry this build was pulled from (absent when it was built, or reused, here). */
    buildCacheRef?: string;
};

/** Versions of this image given to other builds: the store's version ledger, and version folders present. */
export function takenVersions(storeRoot: string, name: string, buildKey: string): string[] {
    const taken = new Set(Object.entries(readVersionLedger(storeRoot, name)).filter(([, e]) => e.buildKey !== buildKey).map(([v]) => v));
    const dir = path.join(storeRoot, "images", name);
    if (fs.existsSync(dir)) {
        for (const v of fs.readdirSync(dir)) {
            if (!fs.statSync(path.join(dir, v)).isDirectory()) continue;
            try {
                const info = JSON.parse(fs.readFileSync(path.join(dir, v, "build.json"), "utf8")) as { buildKey?: string };
                if (info.buildKey !== buildKey) taken.add(v);
            } catch {
                taken.add(v);
            }
        }
    }
    return [...taken];
}

async function build(inputs: ImageBuildInputs): Promise<ImageBuildOutputs> {
    const report = engineReporter(inputs.logUrn);
    const { evidence, buildCache, ...rest } = inputs;
    let cached = await verifiedCachedResult(inputs.request.buildsDir, inputs.name, inputs.buildKey, report);
    let evidencePath: string | undefined;
    let buildCacheRef: string | undefined;
    if (!cached && buildCache?.pull) {
        const pulled = await restoreFromBuildCache(buildCache, {
            name: inputs.name, buildKey: inputs.buildKey, buildsDir: inputs.request.buildsDir, versionOverride: inputs.versionOverride,
            takenVersions: takenVersions(inputs.storeRoot, inputs.name, inputs.buildKey),
        }, (b, files) => adoptBuild(inputs.request.buildsDir, b, files, report), report, (line) => pulumi.log.warn(line));
        if (pulled) ({ result: cached, evidencePath, ref: buildCacheRef } = pulled);
    }
    const version = inputs.versionOverride
        ? assertVersion(inputs.versionOverride)
        : cached?.version ?? nextVersion(new Date(), takenVersions(inputs.storeRoot, inputs.name, inputs.buildKey));
    if (!inputs.versionOverride) await recordVersion(inputs.storeRoot, inputs.name, version, inputs.buildKey);
    let result: BuildResult;
    if (cached && cached.version === version) {
        if (!buildCacheRef) report(`→ ${inputs.name}: build ${inputs.buildKey.slice(0, 12)} found in the cache (${version}), reusing it`);
        result = cached;
    } else {
        const request = {
            ...inputs.request,
            version,
            // When and from which commit: recorded at build time, so they never cause a rebuild themselves.
            buildInfo: { ...inputs.request.buildInfo, buildTime: new Date().toISOString(), git: gitInfo(inputs.projectDir) },
        };
        result = await buildImage(request, report);
        const when = new Date(String(result.buildInfo.buildTime));
        const packet = await writeBuildEvidence(evidenceRunDir(evidence.root, inputs.name, version, when), request, result, evidence.sign);
        evidencePath = packet.dir;
        report(`→ ${inputs.name} ${version}: build evidence ${packet.dir}${packet.signed ? " (signed)" : ""}`);
    }
    await pruneBuilds(inputs.request.buildsDir, inputs.name, inputs.buildKey, 2).catch(() => []);
    const { reused: _reused, ...res } = result;
    // The build info is part of the outputs contract (lib/contract.ts): a build that records less fails here, not in a consumer.
    const recorded = buildInfoSchema.safeParse(res.buildInfo);
    if (!recorded.success) {
        throw new Error(`${inputs.name}: the build info of ${res.path} does not match the contract (lib/contract.ts): ` +
            recorded.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
    }
    // Plain JSON only: the engine's struct encoding rejects undefined values anywhere in the outputs.
    return JSON.parse(JSON.stringify({ ...rest, ...res, evidencePath, buildCacheRef, fileMtimeMs: fs.statSync(res.path).mtimeMs })) as ImageBuildOutputs;
}

/** Cheap: the size, and the modification time when one was recorded (state from older programs has none). */
function intact(outs: ImageBuildOutputs): boolean {
    try {
        const st = fs.statSync(outs.path);
        return st.size === outs.size && (outs.fileMtimeMs === undefined || st.mtimeMs === outs.fileMtimeMs);
    } catch {
        return false;
    }
}

export const provider: pulumi.dynamic.ResourceProvider<ImageBuildInputs, ImageBuildOutputs> = {
    async create(inputs) {
        const outs = await build(inputs);
        return { id: `${inputs.name}@${inputs.buildKey.slice(0, 16)}`, outs };
    },
    async diff(_id, olds, news) {
        // An empty override is no override (older state wrote "").
        const override = (i: { versionOverride?: string }) => ({ versionOverride: i.versionOverride || undefined });
        const replaces = changedKeys({ buildKey: olds.buildKey, ...override(olds) }, { buildKey: news.buildKey, ...override(news) }, ["buildKey", "versionOverride"]);
        // The artifact was deleted or truncated behind our back: converge by building (or restoring) it again.
        return keyedDiff(olds, news, {}, { replaces: replaces.length === 0 && !intact(olds) ? ["path"] : replaces });
    },
    async read(id, props) {
        // Refresh re-hashes: a damaged artifact drops out of the state, and the next up builds it again.
        if (!props || !intact(props) || (await hashFile(props.path)).sha256 !== props.sha256) return { id: "", props: undefined };
        return { id, props };
    },
    async delete() {
        // Builds are a cache keyed by content: keep them so a re-created stack reuses them; create() prunes.
    },
};

export const ImageBuild = dynamicResource("ImageBuild", provider, {
    outputs: ["sha256", "size", "virtualSize", "path", "version", "buildInfo", "logPath", "pkgManifestPath", "buildJsonPath", "durationSeconds", "schemaVersion", "evidencePath", "buildCacheRef"],
    shown: ["buildKey"],
});
export type ImageBuild = InstanceType<typeof ImageBuild>;
