// Dynamic provider: one Packer → Proxmox build (lib/stages/packerProxmox.ts). Replaced when its build key (the
// template, playbook, roles and the template it clones) changes; the new template appears beside the old one.
// Delete keeps the template on the node, as ProxmoxTemplate does: clones may still use its disks.
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { buildOnProxmox, type PackerProxmoxSpec } from "../lib/stages/packerProxmox";
import { BuildLog } from "../lib/buildlog";
import {dynamicResource, keyedDiff } from "./dynamic";
import { engineReporter } from "./progress";

export interface PackerProxmoxInputs {
    buildKey: string;
    spec: PackerProxmoxSpec;
    /** Secret input (user@realm!tokenid=secret); never part of the outputs. */
    apiToken?: string;
    workDir: string;
    sha256: string;
    logUrn?: string;
}

export interface PackerProxmoxOutputs extends Omit<PackerProxmoxInputs, "apiToken"> {
    node: string;
    vmid: number;
    name: string;
    builtAt: string;
    logPath: string;
}

export async function createTemplate(i: PackerProxmoxInputs): Promise<PackerProxmoxOutputs> {
    if (!i.apiToken) throw new Error(`${i.spec.name}: Packer → Proxmox needs factory:proxmoxApiToken (pulumi config set --secret) or PROXMOX_VE_API_TOKEN`);
    const work = path.join(i.workDir, "packer-proxmox", i.spec.name, i.buildKey.slice(0, 16));
    const logPath = path.join(work, "build.log");
    const log = new BuildLog(logPath, i.spec.name, engineReporter(i.logUrn), [i.apiToken, i.apiToken.split("=").pop() ?? ""]);
    try {
        log.info(`→ ${i.spec.name}: packer build on ${i.spec.node}: clone ${i.spec.cloneName} → template ${i.spec.templateName} (vmid ${i.spec.vmid})`);
        const { vmid } = await buildOnProxmox(i.spec, i.apiToken, work, log);
        const { apiToken: _secret, ...rest } = i;
        return { ...rest, node: i.spec.node, vmid, name: i.spec.templateName, builtAt: new Date().toISOString(), logPath };
    } finally {
        log.close();
    }
}

export const provider: pulumi.dynamic.ResourceProvider<PackerProxmoxInputs, PackerProxmoxOutputs> = {
    async create(inputs) {
        const outs = await createTemplate(inputs);
        return { id: `${outs.node}/${outs.vmid}`, outs };
    },
    async diff(_id, olds, news) {
        return keyedDiff(olds, news, { replace: ["buildKey"] });
    },
    async delete() {
        // Kept on purpose: a template may have clones; retire it on the node (or with TemplateRetention's tags).
    },
};

export const PackerProxmoxTemplateBuild = dynamicResource("PackerProxmoxTemplate", provider, { outputs: ["node", "vmid", "name", "builtAt", "logPath"], secretOutputs: ["apiToken"] });
export type PackerProxmoxTemplateBuild = InstanceType<typeof PackerProxmoxTemplateBuild>;
