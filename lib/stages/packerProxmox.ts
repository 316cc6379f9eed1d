// Packer → Proxmox (FR-2): `packer build` of an image's proxmox-clone template, which clones an existing template
// on the node, provisions the clone with Ansible over SSH and converts it into a new template. The factory's
// part: the variables (no secret among them), the token in the environment only (PROXMOX_TOKEN, the secret half
// of factory:proxmoxApiToken), and the new template's VM id read back from Packer's manifest post-processor.
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { run } from "../exec";
import { apiUrl, splitApiToken } from "../publish/proxmoxApi";
import { packerEnv } from "./packer";

export interface PackerProxmoxSpec {
    name: string;
    imageDir: string;
    template: string;
    playbook: string;
    projectDir: string;
    endpoint: string;
    insecure: boolean;
    node: string;
    bridge: string;
    diskStorage: string;
    /** The template to clone (ProxmoxTemplate's name output of the base image). */
    cloneName: string;
    vmid: number;
    templateName: string;
    description: string;
    sshUsername: string;
    /** Private key of the bootstrap user (its public half is in the cloned template's cloud-init). */
    sshPrivateKeyFile: string;
    ansibleRolesPath: string[];
    extraVars: Record<string, unknown>;
}

// Packer's Proxmox builder takes the token as id ("username") and secret ("token"), and the API base URL.
export { apiUrl, splitApiToken } from "../publish/proxmoxApi";

export function proxmoxVariables(spec: PackerProxmoxSpec, tokenId: string, work: string): Record<string, string | number | boolean> {
    return {
        proxmox_url: apiUrl(spec.endpoint), proxmox_username: tokenId, insecure_skip_tls_verify: spec.insecure, node: spec.node,
        clone_vm: spec.cloneName, vm_id: spec.vmid, template_name: spec.templateName, template_description: spec.description,
        bridge: spec.bridge, disk_storage: spec.diskStorage, ssh_username: spec.sshUsername, ssh_private_key_file: spec.sshPrivateKeyFile,
        playbook: spec.playbook, ansible_roles_path: spec.ansibleRolesPath.join(":"), extra_vars_file: path.join(work, "ansible-vars.json"),
        manifest: path.join(work, "packer-manifest.json"),
    };
}

/** The artifact id (the VM id on Proxmox) of the last build in a Packer manifest. */
export function manifestVmid(text: string): number {
    const m = JSON.parse(text) as { builds?: Array<{ artifact_id?: string; builder_type?: string }> };
    const last = m.builds?.[m.builds.length - 1];
    const id = Number(last?.artifact_id);
    if (!Number.isInteger(id) || id <= 0) throw new Error(`packer's manifest names no VM id (artifact_id ${JSON.stringify(last?.artifact_id)})`);
    return id;
}

export async function buildOnProxmox(spec: PackerProxmoxSpec, apiToken: string, work: string, log?: BuildLog): Promise<{ vmid: number }> {
    if (!fs.existsSync(spec.sshPrivateKeyFile)) {
        throw new Error(`${spec.name}: no SSH key at ${spec.sshPrivateKeyFile}: set factory:proxmox.packerSshKeyFile to the private key of the bootstrap user`);
    }
    const { tokenId, secret } = splitApiToken(apiToken);
    fs.mkdirSync(work, { recursive: true });
    const vars = proxmoxVariables(spec, tokenId, work);
    fs.writeFileSync(String(vars.extra_vars_file), JSON.stringify({ image_name: spec.name, bootstrap_user: spec.sshUsername, ...spec.extraVars }));
    fs.rmSync(String(vars.manifest), { force: true });
    const varFile = path.join(work, "proxmox.pkrvars.json");
    fs.writeFileSync(varFile, `${JSON.stringify(vars, null, 2)}\n`);
    await run("packer", ["build", "-color=false", "-on-error=cleanup", `-var-file=${varFile}`, path.basename(spec.template)], {
        cwd: spec.imageDir,
        // The secret only ever travels in this child's environment (the template reads env("PROXMOX_TOKEN")).
        env: { ...packerEnv(spec.projectDir), PROXMOX_TOKEN: secret },
        log,
        hint: `packer build on ${spec.node} failed: check the token's rights (VM.Clone, VM.Allocate, VM.Config.*, Datastore.AllocateSpace), that ${spec.cloneName} exists, and the build log`,
    });
    return { vmid: manifestVmid(fs.readFileSync(String(vars.manifest), "utf8")) };
}
