// Dynamic provider: the record of an artifact this stack takes from another lab stack (factory:reuse): which stack,
// which image, version and sha256. It does nothing remote; it exists so the digest a Proxmox download verifies has a
// visible origin. Policies cannot see a StackReference as a dependency, but they see this resource, so
// `published-sha256-from-build` accepts a digest wired from it (and still refuses a literal).
import * as pulumi from "@pulumi/pulumi";
import {changedKeys, dynamicResource } from "./dynamic";

export interface ReusedArtifactInputs {
    /** The stack the artifact was built by (factory:reuse.stack). */
    stack: string;
    image: string;
    version: string;
    sha256: string;
    /** Where this stack's consumers download it (the release asset or the store URL). */
    url: string;
}

const KEYS = ["stack", "image", "version", "sha256", "url"] as const;

export const provider: pulumi.dynamic.ResourceProvider<ReusedArtifactInputs, ReusedArtifactInputs> = {
    async check(_olds, news) {
        const failures = /^[0-9a-f]{64}$/.test(news.sha256) ? [] : [{ property: "sha256", reason: `${news.stack} published ${news.image} without a sha256` }];
        return { inputs: news, failures };
    },
    async create(inputs) {
        return { id: `${inputs.stack}#${inputs.image}`, outs: inputs };
    },
    async diff(_id, olds, news) {
        return { changes: changedKeys({ ...olds }, { ...news }, KEYS).length > 0 };
    },
    async update(_id, _olds, news) {
        return { outs: news };
    },
};

export const ReusedArtifact = dynamicResource("ReusedArtifact", provider, { outputs: [], shown: ["stack", "version", "sha256", "url"] });
export type ReusedArtifact = InstanceType<typeof ReusedArtifact>;
