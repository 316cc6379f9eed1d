// Dynamic provider: the repository's record of one published image version (releases/, docs/releases.md,
// manifests/). It outlives the resource: history is never rewritten on destroy.
// `dir` is kept as configured (factory:release.metadataDir, default "." — the checkout) and resolved where the
// provider runs (the project directory): a CI runner's checkout is a new directory every run, and the record is the
// same record there. What decides a rewrite is whether that checkout holds it: its releases/<version>.json must name
// this image with this sha256 (a fresh clone has it from git; a run whose metadata commit was lost does not).
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeReleaseMetadata, type ManifestSource, type ReleaseFile, type ReleaseImageRecord } from "../lib/publish/releaseMetadata";
import {changedKeys, dynamicResource, keyedDiff } from "./dynamic";

export interface ReleaseMetadataInputs {
    /** Relative to the project directory (or absolute). */
    dir: string;
    record: Omit<ReleaseImageRecord, "toolsJson">;
    pkgManifestPath: string;
    source: ManifestSource;
    /** Also write manifests/tools.json (the Toolsmith manifest of the lab's primary image). */
    primary: boolean;
}

export interface ReleaseMetadataOutputs extends ReleaseMetadataInputs {
    files: string[];
    toolsJsonPath: string;
}

/** The directory the record is written to: `dir` against the project directory the provider runs in. */
export function metadataDir(dir: string, projectDir = process.cwd()): string {
    return path.resolve(projectDir, dir);
}

/** Whether the checkout's releases/<version>.json already records this image with these bytes and build. */
export function recorded(i: Pick<ReleaseMetadataInputs, "dir" | "record">, projectDir = process.cwd()): boolean {
    try {
        const file = JSON.parse(fs.readFileSync(path.join(metadataDir(i.dir, projectDir), "releases", `${i.record.version}.json`), "utf8")) as ReleaseFile;
        const entry = file.images?.[i.record.image];
        return entry?.qcow2?.sha256 === i.record.qcow2.sha256 && entry.buildKey === i.record.buildKey;
    } catch {
        return false;
    }
}

async function write(i: ReleaseMetadataInputs): Promise<ReleaseMetadataOutputs> {
    const changed = await writeReleaseMetadata(metadataDir(i.dir), i.record, fs.readFileSync(i.pkgManifestPath, "utf8"), i.source, { primary: i.primary });
    return { ...i, files: changed.sort(), toolsJsonPath: path.join(i.dir, "manifests", `${i.record.image}.tools.json`) };
}

export const provider: pulumi.dynamic.ResourceProvider<ReleaseMetadataInputs, ReleaseMetadataOutputs> = {
    async create(inputs) {
        return { id: `${inputs.record.image}@${inputs.record.version}`, outs: await write(inputs) };
    },
    async diff(_id, olds, news) {
        // Another image or version is another record; anything else in it is rewritten in place, and so is a record
        // the checkout does not hold (a lost metadata commit).
        const identity = (i: ReleaseMetadataInputs) => ({ version: i.record.version, image: i.record.image });
        const replaces = changedKeys(identity(olds), identity(news), ["version", "image"]).length > 0 ? ["record"] : [];
        const d = keyedDiff(olds, news, { update: ["dir", "record", "source", "primary"] }, { replaces });
        return d.changes || recorded(news) ? d : { ...d, changes: true, diffs: ["record"] };
    },
    async update(_id, _olds, news) {
        return { outs: await write(news) };
    },
    async delete() {
        // Release history stays in the repository.
    },
};

export const ReleaseMetadata = dynamicResource("ReleaseMetadata", provider, { outputs: ["files", "toolsJsonPath"] });
export type ReleaseMetadata = InstanceType<typeof ReleaseMetadata>;
