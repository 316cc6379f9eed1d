// `make packer-validate` (and CI): `packer validate` of every Packer template under images/, with the variables
// the factory would pass, generated here around stand-in inputs (an empty qcow2 as the base, a throw-away key).
// Exits non-zero naming each template that fails.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { run } from "../lib/exec";
import { packerEnv, packerValidate, prepareQemuInputs } from "../lib/stages/packer";
import { hashFile } from "../lib/sha256";
import { listImageNames, loadRecipe, type ImageRecipe, type PackerBuilder } from "../lib/recipe";

const projectDir = path.resolve(__dirname, "..");

/** Variables of a Packer → Proxmox template: the ones lib/stages/packerProxmox would pass, with stand-in values. */
export function proxmoxStandInVars(recipe: ImageRecipe, work: string): Record<string, string | number | boolean> {
    const imageDir = path.join(projectDir, "images", recipe.name);
    const b = recipe.builder as PackerBuilder;
    return {
        proxmox_url: "https://pve.invalid:8006/api2/json", proxmox_username: "factory@pve!packer", insecure_skip_tls_verify: false,
        node: "pve1", clone_vm: "debian-12-minimal-v2026-01-01", vm_id: 9100, template_name: `${recipe.name}-validate`,
        template_description: "packer validate", disk_storage: "local-lvm", ssh_username: "ansible",
        ssh_private_key_file: path.join(work, "ssh", "id_ed25519"), playbook: path.join(imageDir, b.playbook ?? "playbook.yml"),
        ansible_roles_path: path.join(projectDir, "ansible", "roles"), extra_vars_file: path.join(work, "ansible-vars.json"), manifest: path.join(work, "manifest.json"),
    };
}

export async function validateTemplate(recipe: ImageRecipe): Promise<void> {
    const b = recipe.builder as PackerBuilder;
    const imageDir = path.join(projectDir, "images", recipe.name);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), `if-packer-${recipe.name}-`));
    try {
        let varFile: string;
        if (b.path === "qemu") {
            const base = path.join(work, "base.qcow2");
            await run("qemu-img", ["create", "-q", "-f", "qcow2", base, "64M"]);
            varFile = await prepareQemuInputs({
                name: recipe.name, hostname: recipe.name, domain: "validate.internal", imageDir, template: path.join(imageDir, b.template),
                playbook: b.playbook ? path.join(imageDir, b.playbook) : undefined, user: { name: "ansible", authorizedKeys: [] },
                base: { id: "stand-in", version: "0", sha256: (await hashFile(base)).sha256, path: base }, diskSize: b.diskSize, memoryMiB: b.memoryMiB,
                cpus: b.cpus, vars: b.vars, ansibleRolesPath: [path.join(projectDir, "ansible", "roles")], ansibleCollectionsPath: [path.join(projectDir, "ansible", "collections")],
                projectDir, sourceDateEpoch: recipe.sourceDateEpoch, buildKey: "0".repeat(64), buildInfo: {},
            }, work, "tcg");
        } else {
            fs.mkdirSync(path.join(work, "ssh"), { recursive: true });
            await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(work, "ssh", "id_ed25519")]);
            fs.writeFileSync(path.join(work, "ansible-vars.json"), "{}");
            varFile = path.join(work, "vars.pkrvars.json");
            fs.writeFileSync(varFile, JSON.stringify(proxmoxStandInVars(recipe, work)));
        }
        process.env.PROXMOX_TOKEN ??= "validate-only"; // the template reads its token from the environment
        await packerValidate(path.join(imageDir, b.template), varFile, projectDir);
    } finally {
        fs.rmSync(work, { recursive: true, force: true });
    }
}

export function packerImages(): ImageRecipe[] {
    return listImageNames().map((n) => loadRecipe(n)).filter((r) => r.builder.kind === "packer");
}

async function main(): Promise<number> {
    const { stdout } = await run("packer", ["version"], { env: packerEnv(projectDir) });
    console.log(stdout.trim());
    let failed = 0;
    for (const r of packerImages()) {
        const b = r.builder as PackerBuilder;
        try {
            await validateTemplate(r);
            console.log(`ok    images/${r.name}/${b.template} (${b.path})`);
        } catch (err) {
            failed++;
            console.log(`FAIL  images/${r.name}/${b.template} (${b.path})\n${(err as Error).message}`);
        }
    }
    return failed ? 1 : 0;
}

if (require.main === module) main().then((c) => process.exit(c), (e: Error) => { console.error(e.message); process.exit(1); });
