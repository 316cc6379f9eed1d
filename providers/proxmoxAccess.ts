// Dynamic provider: before the first download or template on a node, checks that the endpoint answers, the API token
// of factory:proxmoxApiToken is accepted, the node exists and the token holds every privilege the factory's calls
// need, and fails naming what to fix. The bridged provider would otherwise stop halfway with a bare 401 or 403.
// Runs on create and whenever the endpoint, node, storages or token id change; never in preview, which must work
// from machines that cannot reach the lab (PR checks).
import * as pulumi from "@pulumi/pulumi";
import { UserError } from "../lib/errors";
import { listNodes, missingPrivileges, splitApiToken } from "../lib/publish/proxmoxApi";
import {changedKeys, dynamicResource } from "./dynamic";

export interface ProxmoxAccessInputs {
    endpoint: string;
    /** Secret input; never part of the outputs. */
    apiToken?: string;
    insecure: boolean;
    node: string;
    imageStorage: string;
    diskStorage: string;
}

export interface ProxmoxAccessOutputs extends Omit<ProxmoxAccessInputs, "apiToken"> {
    /** user@realm!tokenid: not secret, and tells a changed token apart. */
    tokenId: string;
}

const KEYS = ["endpoint", "insecure", "node", "imageStorage", "diskStorage", "tokenId"] as const;

/** The id part of a token, tolerant of a malformed one (diff must not throw; verify says what is wrong). */
function tokenIdOf(token: string | undefined): string {
    return (token ?? "").split("=")[0];
}

async function verify(i: ProxmoxAccessInputs): Promise<ProxmoxAccessOutputs> {
    const { apiToken, ...rest } = i;
    const { tokenId } = splitApiToken(apiToken ?? "");
    const t = { endpoint: i.endpoint, apiToken: apiToken ?? "", insecure: i.insecure };
    const nodes = await listNodes(t);
    if (!nodes.some((n) => n.node === i.node)) {
        throw new UserError(`Proxmox node ${i.node} (factory:proxmox.node) is not in the cluster at ${i.endpoint}; it has: ${nodes.map((n) => n.node).join(", ") || "none"}`);
    }
    const missing = await missingPrivileges(t, i);
    if (missing.length) {
        throw new UserError(`the token ${tokenId} of factory:proxmoxApiToken lacks ${missing.join(", ")}: ` +
            "grant them (pveum acl modify <path> --tokens <token> --roles <role>, or a role with those privileges) or use another token");
    }
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
