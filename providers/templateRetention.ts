// Dynamic provider: retires Proxmox templates beyond factory:proxmox.keepLast. Only VMs that are templates and
// carry this image's tag are touched; a template Proxmox refuses to delete (linked clones still use its disks)
// is kept and reported, never forced.
import * as pulumi from "@pulumi/pulumi";
import { deleteVm, listVms } from "../lib/publish/proxmoxApi";
import type { TemplateRecord } from "../lib/publish/vmids";
import {dynamicResource } from "./dynamic";
import { engineReporter } from "./progress";

export interface TemplateRetentionInputs {
    endpoint: string;
    /** Secret input; never part of the outputs. */
    apiToken?: string;
    insecure: boolean;
    node: string;
    image: string;
    retired: TemplateRecord[];
    logUrn?: string;
}

export interface TemplateRetentionOutputs extends Omit<TemplateRetentionInputs, "apiToken"> {
    deleted: number[];
    /** Retired templates Proxmox would not delete (a linked clone uses them): kept in the records, tried again. */
    keptInUse: Array<{ vmid: number; reason: string }>;
    /** Retired ids that now hold a VM that is not this image's template: never touched, dropped from the records. */
    leftAlone: Array<{ vmid: number; reason: string }>;
}

export function imageTag(image: string): string {
    return `if-${image}`.toLowerCase();
}

async function retire(i: TemplateRetentionInputs): Promise<TemplateRetentionOutputs> {
    const { apiToken, ...rest } = i;
    const out: TemplateRetentionOutputs = { ...rest, deleted: [], keptInUse: [], leftAlone: [] };
    if (i.retired.length === 0) return out;
    if (!apiToken) throw new Error("retiring old templates needs factory:proxmoxApiToken");
    const report = engineReporter(i.logUrn);
    const t = { endpoint: i.endpoint, apiToken, insecure: i.insecure };
    const vms = await listVms(t, i.node);
    for (const r of i.retired) {
        const vm = vms.find((v) => v.vmid === r.vmid);
        if (!vm) continue; // already gone
        const tags = (vm.tags ?? "").split(/[;,\s]+/);
        if (vm.template !== 1 || !tags.includes(imageTag(i.image))) {
            out.leftAlone.push({ vmid: r.vmid, reason: `not a template tagged ${imageTag(i.image)} (tags or template flag differ): left alone` });
            report(`→ ${i.image}: VM ${r.vmid} is not a template tagged ${imageTag(i.image)}: left alone`);
            continue;
        }
        try {
            await deleteVm(t, i.node, r.vmid);
            out.deleted.push(r.vmid);
            report(`→ ${i.image}: retired template ${r.vmid} (${r.version})`);
        } catch (err) {
            out.keptInUse.push({ vmid: r.vmid, reason: (err as Error).message });
            report(`→ ${i.image}: kept template ${r.vmid} (${r.version}): ${(err as Error).message}`);
        }
    }
    return out;
}

export const provider: pulumi.dynamic.ResourceProvider<TemplateRetentionInputs, TemplateRetentionOutputs> = {
    async create(inputs) {
        return { id: `${inputs.node}/${inputs.image}`, outs: await retire(inputs) };
    },
    async diff(_id, olds, news) {
        // Work is left when a retired template was neither deleted nor left alone by the last run: a new one, or one
        // kept because a linked clone still used it (tried again on every run until it goes). A template deleted last
        // time drops out of the records, which is no work.
        // In a preview the list is unknown (the engine's placeholder, not an array) while a new version is being built.
        if (!Array.isArray(news.retired)) return { changes: true };
        const handled = new Set([...(olds.deleted ?? []), ...(olds.leftAlone ?? []).map((l) => l.vmid)]);
        const pending = news.retired.some((r) => !handled.has(r.vmid));
        return { changes: pending || olds.endpoint !== news.endpoint || olds.node !== news.node };
    },
    async update(_id, _olds, news) {
        return { outs: await retire(news) };
    },
    async delete() {
        // Destroying the stack retires nothing by itself: templates outlive it (clones may use them).
    },
};

export const TemplateRetention = dynamicResource("TemplateRetention", provider, { outputs: ["deleted", "keptInUse", "leftAlone"] });
export type TemplateRetention = InstanceType<typeof TemplateRetention>;
