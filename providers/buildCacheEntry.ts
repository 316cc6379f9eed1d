// Dynamic provider: a gated build pushed to the shared build cache as the entry of its key (lib/buildCache.ts), so
// other builders pull it instead of building it. Created once per build key; an entry that already verifies is
// left as it is and nothing is sent. Destroy leaves the entry: the cache is shared by every stack and machine, and
// the registry's retention, not one stack, decides when an entry goes.
import * as pulumi from "@pulumi/pulumi";
import { buildCacheSettings, pushEntry, type BuildCacheInput, type EntrySource } from "../lib/buildCache";
import type { SigningOptions } from "../lib/evidence/packet";
import { dynamicResource, keyedDiff } from "./dynamic";
import { engineReporter } from "./progress";

/** The entry as lib/buildCache.ts pushes it (the build's files, its evidence, the gate it passed), and how. */
export interface BuildCacheEntryInputs extends EntrySource {
    /** Secret: it holds the registry password. */
    cache: BuildCacheInput;
    /** The evidence key that signs the entry; its passphrase is secret. */
    sign: SigningOptions;
    logUrn?: string;
}

export interface BuildCacheEntryOutputs {
    name: string;
    buildKey: string;
    sha256: string;
    ref: string;
    manifestDigest: string;
    /** False when the cache already held a good entry for the key: nothing was sent. */
    uploaded: boolean;
}

async function push(i: BuildCacheEntryInputs): Promise<BuildCacheEntryOutputs> {
    const report = engineReporter(i.logUrn);
    if (!i.gate.passed) throw new Error(`${i.name}: a build that did not pass its gate never goes to the build cache`);
    const { cache, sign, logUrn: _logUrn, ...entry } = i;
    const r = await pushEntry(buildCacheSettings(cache), entry, sign, report);
    return { name: i.name, buildKey: i.buildKey, sha256: i.sha256, ref: r.ref, manifestDigest: r.manifestDigest, uploaded: r.uploaded };
}

export const provider: pulumi.dynamic.ResourceProvider<BuildCacheEntryInputs, BuildCacheEntryOutputs> = {
    async create(inputs) {
        const outs = await push(inputs);
        return { id: `${inputs.name}@${inputs.buildKey.slice(0, 16)}`, outs };
    },
    async diff(_id, olds, news) {
        // Another build (or other bytes under the same key, after a local rebuild) is another entry to offer.
        return keyedDiff(olds, news, { replace: ["buildKey", "sha256"] });
    },
    async delete() {
        // Shared by every stack and machine: the registry's retention removes entries, never one stack's destroy.
    },
};

export const BuildCacheEntry = dynamicResource("BuildCacheEntry", provider, { outputs: ["ref", "manifestDigest", "uploaded"] });
export type BuildCacheEntry = InstanceType<typeof BuildCacheEntry>;
