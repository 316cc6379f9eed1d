// Dynamic provider: the repository's record of one published image version (releases/, docs/releases.md,
// manifests/). It outlives the resource: history is never rewritten on destroy.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import { writeReleaseMetadata, type ManifestSource, type ReleaseImageRecord } from "../lib/releaseMetadata";
import { FactoryResource } from "./dynamic";

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
        const keys = ["dir", "record", "source", "primary"] as const;
        const replaces = olds.dir !== news.dir || olds.record.version !== news.record.version || olds.record.image !== news.record.image ? ["record"] : [];
        return { changes: keys.some((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k])), replaces, deleteBeforeReplace: false };
    },
    async update(_id, _olds, news) {
        return { outs: await write(news) };
    },
    async delete() {
        // Release history stays in the repository.
    },
};

export class ReleaseMetadata extends FactoryResource {
    declare readonly files: pulumi.Output<string[]>;
    declare readonly toolsJsonPath: pulumi.Output<string>;

    constructor(name: string, args: pulumi.Inputs & { [K in keyof ReleaseMetadataInputs]: pulumi.Input<ReleaseMetadataInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
        super(provider as pulumi.dynamic.ResourceProvider, "ReleaseMetadata", name, { ...args, files: undefined, toolsJsonPath: undefined }, opts);
    }
}
