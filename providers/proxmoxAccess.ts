// Dynamic provider: before the first download or template on a node, checks that the endpoint answers, the API token
// of factory:proxmoxApiToken is accepted, the node exists, the token's effective privileges (privilege separation:
// its own ACL intersected with its user's) hold what the factory's calls need, the node's version imports disk images
// and the image storage takes content type import; fails naming every gap at once and how to fix each. The bridged provider would otherwise stop halfway with a bare 401 or 403.
// Runs on create and whenever the endpoint, node, storages or token id change; never in preview, which must work
// from machines that cannot reach the lab (PR checks).
import * as pulumi from "@pulumi/pulumi";
import { UserError } from "../lib/errors";
import { listNodes, missingPrivileges, pveVersion, splitApiToken, storageContent } from "../lib/publish/proxmoxApi";
import {changedKeys, dynamicResource } from "./dynamic";

export interface ProxmoxAccessInputs {
    endpoint: string;
    /** Secret input; never part of the outputs. */
    apiToken?: string;
    insecure: boolean;
    node: string;
    imageStorage: string;
    diskStorage: string;
    bridge: string;
}

export interface ProxmoxAccessOutputs extends Omit<ProxmoxAccessInputs, "apiToken"> {
    /** user@realm!tokenid: not secret, and tells a changed token apart. */
    tokenId: string;
}

const KEYS = ["endpoint", "insecure", "node", "imageStorage", "diskStorage", "bridge", "tokenId"] as const;

/** The id part of a token, tolerant of a malformed one (diff must not throw; verify says what is wrong). */
function tokenIdOf(token: string | undefined): string {
    return (token ?? "").split("=")[0];
}

/** Every gap at once: the node, the token's effective privileges, the PVE version, the image storage's content. */
async function verify(i: ProxmoxAccessInputs): Promise<ProxmoxAccessOutputs> {
    const { apiToken, ...rest } = i;
    const { tokenId } = splitApiToken(apiToken ?? "");
    const t = { endpoint: i.endpoint, apiToken: apiToken ?? "", insecure: i.insecure };
    const nodes = await listNodes(t);
    if (!nodes.some((n) => n.node === i.node)) {
        throw new UserError(`Proxmox node ${i.node} (factory:proxmox.node) is not in the cluster at ${i.endpoint}; it has: ${nodes.map((n) => n.node).join(", ") || "none"}`);
    }
    const gaps: string[] = [];
    const missing = await missingPrivileges(t, i);
    if (missing.length) {
        gaps.push(`the token ${tokenId} of factory:proxmoxApiToken lacks ${missing.join("; ")}: grant them to the token and to its user ` +
            "(a token with privilege separation holds only what both hold): pveum acl modify <path> --tokens <token> --roles <role> (README \"Proxmox VE templates\")");
    }
    const version = await pveVersion(t);
    if (!version.imports) {
        gaps.push(`Proxmox VE ${version.version} on ${i.node} cannot download disk images for import (content type import came with PVE 8.4): upgrade the node`);
    }
    const content = await storageContent(t, i.node, i.imageStorage);
    if (content === undefined) {
        gaps.push(`storage ${i.imageStorage} (factory:proxmox.imageStorage) is not on ${i.node}, or the token may not see it (Datastore.Audit)`);
    } else if (!content.includes("import")) {
        gaps.push(`storage ${i.imageStorage} (factory:proxmox.imageStorage) does not take content type import (it has ${content.join(",") || "none"}): ` +
            `pvesm set ${i.imageStorage} --content ${[...content, "import"].join(",")}`);
    }
    if (gaps.length) throw new UserError(`Proxmox ${i.node} at ${i.endpoint} is not ready for templates:\n${gaps.map((g) => `  - ${g}`).join("\n")}`);
    return { ...rest, tokenId };
}

export const provider: pulumi.dynamic.ResourceProvider<ProxmoxAccessInputs, ProxmoxAccessOutputs> = {
    async create(inputs) {
        return { id: `${inputs.endpoint}#${inputs.node}`, outs: await verify(inputs) };
    },
    async diff(_id, olds, news) {
        const changes = changedKeys(olds as unknown as Record<string, unknown>, { ...news, tokenId: tokenIdOf(news.apiToken) }, KEYS);
        return { changes: changes.length > 0, replaces: [] };
    },
    async update(_id, _olds, news) {
        return { outs: await verify(news) };
    },
    async delete() {
        // Nothing was made.
    },
};

export const ProxmoxAccess = dynamicResource("ProxmoxAccess", provider, { outputs: ["tokenId"] });
export type ProxmoxAccess = InstanceType<typeof ProxmoxAccess>;
