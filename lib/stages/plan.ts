// Planning a build: from a recipe and the stack's settings to the build key and the exact build request.
// Pure and synchronous (small file reads and tool version probes only), so `pulumi preview` knows every build
// key, and tests can check which images a change would rebuild without building anything.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import type { ImageRecipe } from "../recipe";
import { artifactFormat, recipeFiles } from "../recipe";
import { computeBuildKey, hashFiles } from "./buildKey";
import { canonicalJson, sha256Hex } from "../sha256";
import { stagesRevision } from "../stageRevision";
import type { PlannedRequest } from "./pipeline";
import { BASE_PACKAGES } from "./rootfs";
import type { DebianSource } from "../aptSources";
import { toolVersions } from "../toolVersions";
import { which } from "../exec";


export interface PlanArgs {
    recipe: ImageRecipe;
    /** Checkout root: recipes and Ansible roles are read from here. */
    projectDir: string;
    /** Absolute: builds live in <workDir>/builds/<name>/<buildKey>, package caches in <workDir>/cache. */
    workDir: string;
    bootstrapUser: { name: string; authorizedKeys: string[] };
    domain: string;
    debian: DebianSource;
    versionOverride?: string;
    /**
     * The base of a Packer or Pi build, as known at preview time: `identity` is the catalog sha256 or the base
     * image's build key (either fixes the base's bytes). Its path and sha256 are filled into the request when
     * the base exists (withBase), so the key never waits for a build.
     */
    base?: { id: string; version: string; identity: string };
}

export interface BuildPlan {
    buildKey: string;
    request: PlannedRequest;
}

const BUILDER_DIR = __dirname;

/** 20250520T000000Z -> unix seconds. */
export function snapshotEpoch(snapshot: string): number {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(snapshot);
    if (!m) throw new Error(`bad snapshot timestamp ${snapshot}`);
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000;
}

const TOOLS_BY_BUILDER: Record<string, string[]> = {
    rootfs: ["mmdebstrap", "qemu-img", "e2fsprogs", "fdisk"],
    packer: ["packer", "qemu-img", "e2fsprogs"],
    pi: ["qemu-img", "e2fsprogs", "fdisk", "qemu-user-static"],
    iso: ["xorriso"],
};

/** A playbook that is not YAML fails the plan (preview included) naming the file, line and column, not the build. */
function checkYaml(file: string, projectDir: string): void {
    try {
        parseYaml(fs.readFileSync(file, "utf8"));
    } catch (err) {
        const e = err as Error & { linePos?: Array<{ line: number; col: number }> };
        const at = e.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : "";
        throw new Error(`${path.relative(projectDir, file)} is not valid YAML${at}: ${e.message.split("\n")[0]}`);
    }
}

/**
 * The builder node bakes our built tools (.tools/bin, listed in the builder_node role's defaults) into its image, so
 * a new Pulumi or oras must change its build key. Each is identified by tools/build.sh's stamp (a hash of its
 * inputs, no re-hash of 100 MB binaries per run), a small script by its sha256; a missing one fails here, naming
 * the fix, instead of deep inside the Packer run.
 */
export function bakedToolIdentities(projectDir: string): Record<string, string> {
    const defaults = parseYaml(fs.readFileSync(path.join(projectDir, "ansible", "roles", "builder_node", "defaults", "main.yml"), "utf8")) as { builder_node_tools?: string[] };
    const out: Record<string, string> = {};
    /** tools/build.sh's stamp of a tool, or undefined when it has none. */
    const stampOf = (name: string) => {
        const stamp = path.join(projectDir, ".tools", "stamps", name);
        return fs.existsSync(stamp) ? `stamp:${fs.readFileSync(stamp, "utf8").trim()}` : undefined;
    };
    for (const tool of defaults.builder_node_tools ?? []) {
        const binary = path.join(projectDir, ".tools", "bin", tool);
        if (!fs.existsSync(binary)) {
            throw new Error(`images/builder-node carries .tools/bin/${tool}, which is missing: run bash scripts/setup.sh (tools/build.sh builds it)`);
        }
        out[tool] = stampOf(tool) ?? `sha256:${sha256Hex(fs.readFileSync(binary))}`;
    }
    // The forge kit (forge-install's npm, the Packer and Proxmox VE plugins) and the node binary go in as well.
    for (const plugin of FORGE_KIT_PLUGINS) {
        const stamp = stampOf(plugin);
        if (!stamp) throw new Error(`images/builder-node carries the ${plugin} plugin, whose build stamp .tools/stamps/${plugin} is missing: run bash scripts/setup.sh (tools/build.sh builds it)`);
        out[plugin] = stamp;
    }
    out.node = process.version;
    const npm = which("npm");
    const npmPackage = npm && path.join(path.dirname(path.dirname(fs.realpathSync(npm))), "package.json");
    out.npm = npmPackage && fs.existsSync(npmPackage) ? (JSON.parse(fs.readFileSync(npmPackage, "utf8")) as { version: string }).version : "absent";
    return out;
}

/** The plugins tools/build.sh builds that the builder node's forge kit carries (ansible/roles/builder_node). */
const FORGE_KIT_PLUGINS = ["packer-plugin-qemu", "packer-plugin-ansible", "packer-plugin-proxmox", "pulumi-resource-proxmoxve"];

export function planBuild(args: PlanArgs): BuildPlan {
    const r = args.recipe;
    const b = r.builder;
    const imagesDir = path.join(args.projectDir, "images");
    const imageDir = path.join(imagesDir, r.name);
    const playbook = "playbook" in b && b.playbook ? path.join(imageDir, b.playbook) : undefined;
    if (playbook) checkYaml(playbook, args.projectDir);
    const files = hashFiles(recipeFiles(r.name, imagesDir), args.projectDir);
    const debian = args.debian;
    if ((b.kind === "packer" || b.kind === "pi") && !args.base) {
        throw new Error(`images/${r.name}: a ${b.kind} build needs its base (${JSON.stringify(b.base)}) resolved by the caller`);
    }
    const bakedTools = r.kind === "builder-node" ? bakedToolIdentities(args.projectDir) : undefined;
    const variables = {
        bootstrapUser: args.bootstrapUser,
        domain: args.domain,
        debian,
        basePackages: b.kind === "rootfs" ? BASE_PACKAGES : null,
        versionOverride: args.versionOverride ?? null,
        // Only for the builder node (other images' keys stay as they were): the tools it carries are inputs too.
        ...(bakedTools ? { bakedTools } : {}),
    };
    const tools = toolVersions([...TOOLS_BY_BUILDER[b.kind], ...(playbook ? ["ansible-core"] : [])]);
    const builderRevision = stagesRevision(BUILDER_DIR, b.kind);
    const base = args.base ? { id: `${args.base.id}@${args.base.version}`, sha256: args.base.identity } : null;
    const buildKey = computeBuildKey({
        builder: b.kind, builderRevision, recipe: r as unknown as Record<string, unknown>, files, variables, base, tools,
    });
    const sourceDateEpoch = args.debian.snapshot ? snapshotEpoch(args.debian.snapshot) : r.sourceDateEpoch;
    const hostname = ("hostname" in b && b.hostname) || r.name;
    const ansibleRolesPath = [path.join(args.projectDir, "ansible", "roles")];
    const ansibleCollectionsPath = [path.join(args.projectDir, "ansible", "collections")];
    const buildInfo = {
        schemaVersion: 1,
        image: r.name,
        description: r.description,
        kind: r.kind,
        pass: r.pass,
        builder: b.kind,
        builderRevision,
        format: artifactFormat(r),
        recipe: { sha256: sha256Hex(canonicalJson(files)), files },
        sourceDateEpoch,
        tools,
        bootstrapUser: args.bootstrapUser.name,
    };
    const common = {
        name: r.name,
        buildKey,
        format: artifactFormat(r),
        buildInfo,
        buildsDir: path.join(args.workDir, "builds"),
        cacheDir: path.join(args.workDir, "cache"),
    };
    // Filled in by withBase once the base exists; its identity is in the key already.
    const pendingBase = { id: args.base?.id ?? "", version: args.base?.version ?? "", sha256: "", path: "" };
    switch (b.kind) {
        case "rootfs":
            return {
                buildKey,
                request: {
                    ...common,
                    builder: "rootfs",
                    rootfs: {
                        name: r.name, hostname, domain: args.domain, suite: b.suite, mirror: debian.mirror, securityMirror: debian.securityMirror,
                        snapshot: debian.snapshot, snapshotBase: debian.snapshotBase, packages: b.packages, diskSizeMiB: b.diskSizeMiB,
                        user: args.bootstrapUser, playbook, ansibleRolesPath, ansibleCollectionsPath, sourceDateEpoch,
                    },
                },
            };
        case "packer":
            if (b.path === "proxmox") throw new Error(`images/${r.name}: a Packer → Proxmox build makes no file; it is planned by planPackerProxmox`);
            return {
                buildKey,
                request: {
                    ...common,
                    builder: "packer",
                    packer: {
                        name: r.name, hostname, domain: args.domain, imageDir, template: path.join(imageDir, b.template), playbook,
                        user: args.bootstrapUser, base: pendingBase, diskSize: b.diskSize, memoryMiB: b.memoryMiB,
                        cpus: b.cpus, vars: b.vars, ansibleRolesPath, ansibleCollectionsPath, projectDir: args.projectDir, sourceDateEpoch,
                    },
                },
            };
        case "pi":
            return {
                buildKey,
                request: {
                    ...common,
                    builder: "pi",
                    pi: {
                        name: r.name, hostname, domain: args.domain, user: args.bootstrapUser, base: pendingBase,
                        growMiB: b.growMiB, playbook, ansibleRolesPath, ansibleCollectionsPath, extraVars: b.vars, sourceDateEpoch,
                    },
                },
            };
        case "iso":
            return {
                buildKey,
                request: {
                    ...common,
                    builder: "iso",
                    iso: {
                        name: r.name, flavour: b.flavour, volumeId: b.volumeId ?? (b.flavour === "nocloud-seed" ? "cidata" : r.name.toUpperCase().replace(/-/g, "_").slice(0, 32)),
                        hostname, domain: args.domain, user: args.bootstrapUser, mirror: debian.mirror, suite: "bookworm", packages: b.packages,
                        sourceDateEpoch, kernelArgs: b.kernelArgs,
                    },
                },
            };
    }
}

/** The request with the base's real file and digest, once the base exists. */
export function withBase(request: PlannedRequest, base: { path: string; sha256: string }): PlannedRequest {
    switch (request.builder) {
        case "packer": return { ...request, packer: { ...request.packer, base: { ...request.packer.base, ...base } } };
        case "pi": return { ...request, pi: { ...request.pi, base: { ...request.pi.base, ...base } } };
        default: return request;
    }
}

export interface PackerProxmoxPlanArgs {
    recipe: ImageRecipe;
    projectDir: string;
    /** The node the template is built on, and the bootstrap user Packer connects as. */
    node: string;
    user: string;
    /** The template cloned (the base image's ProxmoxTemplate), the base image's sha256 and the new template's VM id. */
    clone: string;
    baseSha256: string;
    vmid: number;
}

/**
 * The build key of a Packer → Proxmox template, from the same inputs as every other build key: the recipe and its
 * files, the builders' revision, the template it clones (name and base digest), the node, the VM id and the user.
 */
export function planPackerProxmox(args: PackerProxmoxPlanArgs): string {
    const r = args.recipe;
    return computeBuildKey({
        builder: "packer-proxmox", builderRevision: stagesRevision(BUILDER_DIR, "packer-proxmox"), recipe: r as unknown as Record<string, unknown>,
        files: hashFiles(recipeFiles(r.name, path.join(args.projectDir, "images")), args.projectDir),
        variables: { node: args.node, clone: args.clone, vmid: args.vmid, user: args.user }, base: { id: args.clone, sha256: args.baseSha256 }, tools: {},
    });
}
