// Planning a build: from a recipe and the stack's settings to the build key and the exact build request.
// Pure and synchronous (small file reads and tool version probes only), so `pulumi preview` knows every build
// key, and tests can check which images a change would rebuild without building anything.
import * as path from "node:path";
import type { ImageRecipe } from "../recipe";
import { recipeFiles } from "../recipe";
import { canonicalJson, computeBuildKey, hashFiles, sha256Hex, sourceRevision } from "./buildKey";
import type { BuildRequest } from "./pipeline";
import { BASE_PACKAGES } from "./rootfs";
import { toolVersions } from "./toolVersions";

export interface DebianSource {
    suite: string;
    mirror: string;
    securityMirror: string;
    snapshot?: string;
    snapshotBase?: string;
}

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
}

export interface BuildPlan {
    buildKey: string;
    request: Omit<BuildRequest, "version">;
}

const BUILDER_DIR = __dirname;

/** 20250520T000000Z -> unix seconds. */
export function snapshotEpoch(snapshot: string): number {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(snapshot);
    if (!m) throw new Error(`bad snapshot timestamp ${snapshot}`);
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000;
}

export function planBuild(args: PlanArgs): BuildPlan {
    const r = args.recipe;
    const b = r.builder;
    const imagesDir = path.join(args.projectDir, "images");
    const playbook = b.playbook ? path.join(imagesDir, r.name, b.playbook) : undefined;
    const files = hashFiles(recipeFiles(r.name, imagesDir), args.projectDir);
    const debian = args.debian;
    const securityMirror = debian.securityMirror;
    const variables = {
        bootstrapUser: args.bootstrapUser,
        domain: args.domain,
        debian,
        basePackages: BASE_PACKAGES,
        versionOverride: args.versionOverride ?? null,
    };
    const tools = toolVersions(["debootstrap", "qemu-img", "e2fsprogs", "fdisk", ...(playbook ? ["ansible-core"] : [])]);
    const builderRevision = sourceRevision(BUILDER_DIR);
    const buildKey = computeBuildKey({
        builder: b.kind, builderRevision, recipe: r as unknown as Record<string, unknown>, files, variables, base: null, tools,
    });
    const sourceDateEpoch = args.debian.snapshot ? snapshotEpoch(args.debian.snapshot) : r.sourceDateEpoch;
    return {
        buildKey,
        request: {
            name: r.name,
            buildKey,
            builder: "rootfs",
            rootfs: {
                name: r.name,
                hostname: b.hostname ?? r.name,
                domain: args.domain,
                suite: b.suite,
                mirror: debian.mirror,
                securityMirror,
                snapshot: debian.snapshot,
                snapshotBase: debian.snapshotBase,
                packages: b.packages,
                diskSizeMiB: b.diskSizeMiB,
                user: args.bootstrapUser,
                playbook,
                ansibleRolesPath: [path.join(args.projectDir, "ansible", "roles")],
                ansibleCollectionsPath: [path.join(args.projectDir, "ansible", "collections")],
                sourceDateEpoch,
            },
            buildInfo: {
                schemaVersion: 1,
                image: r.name,
                description: r.description,
                kind: r.kind,
                pass: r.pass,
                builder: b.kind,
                builderRevision,
                recipe: { sha256: sha256Hex(canonicalJson(files)), files },
                sourceDateEpoch,
                tools,
                bootstrapUser: args.bootstrapUser.name,
            },
            buildsDir: path.join(args.workDir, "builds"),
            cacheDir: path.join(args.workDir, "cache"),
        },
    };
}
