// Dynamic provider: the repository's record of one published image version (releases/, docs/releases.md,
// manifests/). It outlives the resource: history is never rewritten on destroy.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import { writeReleaseMetadata, type ManifestSource, type ReleaseImageRecord } from "../lib/publish/releaseMetadata";
import {changedKeys, dynamicResource, keyedDiff } from "./dynamic";

export interface ReleaseMetadataInputs {
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

async function write(i: ReleaseMetadataInputs): Promise<ReleaseMetadataOutputs> {
    const changed = await writeReleaseMetadata(i.dir, i.record, fs.readFileSync(i.pkgManifestPath, "utf8"), i.source, { primary: i.primary });
    return { ...i, files: changed.sort(), toolsJsonPath: `${i.dir}/manifests/${i.record.image}.tools.json` };
}

export const provider: pulumi.dynamic.ResourceProvider<ReleaseMetadataInputs, ReleaseMetadataOutputs> = {
    async create(inputs) {
        return { id: `${inputs.record.image}@${inputs.record.version}`, outs: await write(inputs) };
    },
    async diff(_id, olds, news) {
        // Another directory, image or version is another record; anything else in it is rewritten in place.
        const identity = (i: ReleaseMetadataInputs) => ({ dir: i.dir, version: i.record.version, image: i.record.image });
        const replaces = changedKeys(identity(olds), identity(news), ["dir", "version", "image"]).length > 0 ? ["record"] : [];
        return keyedDiff(olds, news, { update: ["dir", "record", "source", "primary"] }, { replaces });
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
