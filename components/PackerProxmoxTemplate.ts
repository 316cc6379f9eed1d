// A Packer → Proxmox image (FR-2): a template built on the lab's Proxmox node by Packer (proxmox-clone + Ansible),
// from the template ProxmoxTemplate made of its base image, as the body of its Image component. Its outputs match
// ProxmoxTemplate's: node, vmid, name, and derivedFrom (the digest of the image the cloned template was imported from:
// the disk itself Packer changed on the node, so it has no digest the factory can vouch for).
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { planPackerProxmox } from "../lib/stages/plan";
import type { ImageRecipe, PackerBuilder } from "../lib/recipe";
import { templateName } from "../lib/publish/vmids";
import { dynamicType } from "../providers/dynamic";
import { PackerProxmoxTemplateBuild } from "../providers/packerProxmoxTemplate";
import { urnLabel } from "../providers/progress";

export interface PackerProxmoxTemplateArgs {
    recipe: ImageRecipe;
    projectDir: string;
    workDir: string;
    proxmox: { endpoint: string; insecure: boolean; node: string; bridge: string; diskStorage: string; namePattern: string; sshKeyFile: string };
    apiToken?: pulumi.Input<string>;
    vmid: pulumi.Input<number>;
    bootstrapUser: string;
    /** The base image: its version and digest, and the template ProxmoxTemplate made of it. */
    base: { version: pulumi.Input<string>; sha256: pulumi.Input<string>; templateName: pulumi.Input<string> };
}

export interface PackerProxmoxTemplateOutputs {
    node: pulumi.Output<string>;
    vmid: pulumi.Output<number>;
    name: pulumi.Output<string>;
    derivedFrom: pulumi.Output<string>;
    buildKey: pulumi.Output<string>;
}

/** The build on the node, as a child of `parent` (the image's component), after `labAfter` (the previous pass). */
export function packerProxmoxTemplate(name: string, args: PackerProxmoxTemplateArgs, parent: pulumi.Resource, labAfter: pulumi.Resource[]): PackerProxmoxTemplateOutputs {
    const r = args.recipe;
    const b = r.builder as PackerBuilder;
    const imageDir = path.join(args.projectDir, "images", r.name);
    const version = pulumi.output(args.base.version);
    const buildKey = pulumi.all([args.base.sha256, args.base.templateName, args.vmid]).apply(([baseSha256, clone, vmid]) => planPackerProxmox({
        recipe: r, projectDir: args.projectDir, node: args.proxmox.node, user: args.bootstrapUser, clone, baseSha256, vmid,
    }));
    const build = new PackerProxmoxTemplateBuild(`${name}-build`, {
        buildKey,
        apiToken: args.apiToken ? pulumi.secret(args.apiToken) : undefined,
        workDir: args.workDir,
        sha256: args.base.sha256,
        logUrn: urnLabel(`${name}-build`, dynamicType("PackerProxmoxTemplate"), parent),
        spec: pulumi.all([version, args.base.templateName, args.vmid]).apply(([v, clone, vmid]) => ({
            name: r.name, imageDir, template: path.join(imageDir, b.template), playbook: path.join(imageDir, b.playbook ?? "playbook.yml"),
            projectDir: args.projectDir, endpoint: args.proxmox.endpoint, insecure: args.proxmox.insecure, node: args.proxmox.node,
            bridge: args.proxmox.bridge, diskStorage: args.proxmox.diskStorage, cloneName: clone, vmid,
            templateName: templateName(args.proxmox.namePattern, r.name, v), description: `${r.name} ${v}: ${r.description} (built on the node by Packer from ${clone})`,
            sshUsername: args.bootstrapUser, sshPrivateKeyFile: path.resolve(args.projectDir, args.proxmox.sshKeyFile),
            ansibleRolesPath: [path.join(args.projectDir, "ansible", "roles")], extraVars: b.vars,
        })),
    }, { parent, dependsOn: labAfter, customTimeouts: { create: "90m" } });
    return { node: build.node, vmid: build.vmid, name: build.name, derivedFrom: pulumi.output(args.base.sha256), buildKey };
}
