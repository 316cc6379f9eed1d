// The lab stacks (dvnt, dvntm) as they are, with only their endpoints, paths and secrets pointed at this machine:
// the committed Pulumi.<stack>.yaml is copied with exactly the keys of SUBSTITUTED replaced, written as the
// project copy's Pulumi.<stack>.yaml, and the secrets are set as Pulumi secrets. Stack names stay dvnt and dvntm,
// so dvntm's StackReference to organization/image-factory/dvnt resolves as in the lab.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse, stringify } from "yaml";
import type { TestProject } from "./project";
import { REPO_ROOT } from "./setup";

export interface LabEndpoints {
    /** Artifact store directory and the URL it is served at. */
    storeRoot: string;
    storeUrl: string;
    /** host:port of the OCI registry. */
    registry?: string;
    githubApi?: string;
    proxmoxUrl?: string;
    workDir: string;
    evidenceDir: string;
    /** Private key Packer → Proxmox logs in with (dvnt's debian-12-minimal-pve). */
    packerSshKeyFile?: string;
    /** The lab's bootstrap public key (default REHEARSAL_BOOTSTRAP_KEY). */
    bootstrapKey?: string;
    /** The CI rehearsal's subset of dvnt's images (in the lab file's order); every image when absent. */
    images?: string[];
}

export interface LabSecrets {
    githubToken?: string;
    ghcrToken?: string;
    proxmoxApiToken?: string;
}

/** Every config path a rehearsal may change; anything else must stay as the lab has it (a test checks). */
export const SUBSTITUTED = [
    "factory:workDir", "factory:evidence.dir",
    "factory:artifactStore.root", "factory:artifactStore.host", "factory:artifactStore.port", "factory:artifactStore.publicBaseUrl",
    "factory:oci.registry", "factory:release.apiUrl",
    "factory:proxmox.endpoint", "factory:proxmox.packerSshKeyFile",
    // The placeholder key the lab files ship is refused in lab stacks: the lab operator puts the lab's key there.
    "factory:bootstrapUser.sshAuthorizedKeys",
] as const;

/** The rehearsal's stand-in for the lab's bootstrap key (the lab files ship a placeholder the program refuses). */
export const REHEARSAL_BOOTSTRAP_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl rehearsal-lab-key";

type Json = Record<string, unknown>;

export function labConfig(stack: "dvnt" | "dvntm"): Json {
    return (parse(fs.readFileSync(path.join(REPO_ROOT, `Pulumi.${stack}.yaml`), "utf8")) as { config: Json }).config;
}

/** The lab config with the endpoints and paths of this machine. */
export function rehearsalConfig(stack: "dvnt" | "dvntm", e: LabEndpoints): Json {
    const c = structuredClone(labConfig(stack));
    const set = (key: string, field: string | undefined, value: unknown) => {
        if (value === undefined) return;
        if (field === undefined) { c[key] = value; return; }
        if (c[key] === undefined) return; // the lab does not use this target: neither do we
        (c[key] as Json)[field] = value;
    };
    set("factory:workDir", undefined, e.workDir);
    set("factory:bootstrapUser", "sshAuthorizedKeys", [e.bootstrapKey ?? REHEARSAL_BOOTSTRAP_KEY]);
    set("factory:evidence", "dir", e.evidenceDir);
    const port = Number(new URL(e.storeUrl).port);
    set("factory:artifactStore", "root", e.storeRoot);
    set("factory:artifactStore", "host", "127.0.0.1");
    set("factory:artifactStore", "port", port);
    set("factory:artifactStore", "publicBaseUrl", e.storeUrl);
    set("factory:oci", "registry", e.registry);
    set("factory:release", "apiUrl", e.githubApi);
    set("factory:proxmox", "endpoint", e.proxmoxUrl ? `${e.proxmoxUrl}/` : undefined);
    if ((c["factory:proxmox"] as Json | undefined)?.packerSshKeyFile !== undefined) set("factory:proxmox", "packerSshKeyFile", e.packerSshKeyFile);
    if (e.images && stack === "dvnt") c["factory:images"] = (c["factory:images"] as string[]).filter((i) => e.images!.includes(i));
    return c;
}

/** Dotted paths whose values differ between two configs (added, removed or changed). */
export function configDifferences(a: unknown, b: unknown, at = ""): string[] {
    const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
    if (isObj(a) && isObj(b)) {
        const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
        return keys.flatMap((k) => configDifferences(a[k], b[k], at ? `${at}.${k}` : k));
    }
    return JSON.stringify(a) === JSON.stringify(b) ? [] : [at];
}

/** Writes the rehearsal config into the project copy, makes the stack and sets the secrets. */
export async function initLabStack(project: TestProject, stack: "dvnt" | "dvntm", e: LabEndpoints, secrets: LabSecrets): Promise<void> {
    fs.writeFileSync(path.join(project.dir, `Pulumi.${stack}.yaml`), stringify({ config: rehearsalConfig(stack, e) }));
    await project.initStack(stack);
    for (const [k, v] of Object.entries(secrets)) if (v) await project.setConfig(stack, `factory:${k}`, v, { secret: true });
}
