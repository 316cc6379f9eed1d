// Runs the real program (index.ts) under pulumi.runtime.setMocks: every resource it registers is recorded with
// its exact inputs, and plausible outputs are answered for our dynamic resources, the Proxmox provider's
// resources and stack references. Used for what cannot run here (the Proxmox plugin) and for fast graph checks.
import * as pulumi from "@pulumi/pulumi";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { REPO_ROOT } from "./setup";

export interface RegisteredResource {
    type: string;
    name: string;
    inputs: Record<string, unknown>;
    provider?: string;
}

export interface MockRun {
    resources: RegisteredResource[];
    outputs: Record<string, unknown>;
    ofType(type: string): RegisteredResource[];
}

const DYN = "pulumi-nodejs:dynamic/image-factory:";

export function fakeSha(seed: string): string {
    return crypto.createHash("sha256").update(seed).digest("hex");
}

/** A stand-in for the lab's bootstrap key: the lab files ship a placeholder, which the program refuses. */
export const LAB_STAND_IN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl lab-stand-in";

/**
 * Stack config from a committed Pulumi.<stack>.yaml, as the engine hands it to the program (strings); a lab
 * stack's placeholder bootstrap key is replaced by LAB_STAND_IN_KEY, as the lab operator replaces it.
 */
export function stackConfig(stack: string): Record<string, unknown> {
    const doc = parse(fs.readFileSync(path.join(REPO_ROOT, `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
    const user = doc.config["factory:bootstrapUser"] as { sshAuthorizedKeys?: string[] } | undefined;
    if (stack !== "local" && user?.sshAuthorizedKeys) user.sshAuthorizedKeys = [LAB_STAND_IN_KEY];
    return doc.config;
}

/** The registry host the mocked lab runs get from OCI_REGISTRY. */
export const MOCK_OCI_REGISTRY = "oci.example.test";

function outputsFor(type: string, name: string, inputs: Record<string, unknown>, version: string): Record<string, unknown> {
    const req = inputs.request as { buildInfo?: Record<string, unknown> } | undefined;
    switch (type) {
        case `${DYN}ImageBuild`:
            return {
                ...inputs, sha256: fakeSha(`${inputs.name}@${version}`), size: 150_000_000, virtualSize: 2 ** 31, path: `/work/builds/${inputs.name}.qcow2`,
                version, buildInfo: { ...req?.buildInfo, version, buildKey: inputs.buildKey, buildTime: "2026-11-25T12:00:00.000Z", git: { commit: "c0ffee", dirty: false }, base: { id: "debian:bookworm", sha256: fakeSha("base") } },
                logPath: "/work/build.log", pkgManifestPath: "/work/pkg-manifest.txt", buildJsonPath: "/work/build.json",
            };
        case `${DYN}ImageValidation`:
            return { ...inputs, passed: true, checks: [{ id: "cloud-init.installed", status: "pass", reason: "ok" }], evidencePath: "/evidence/validate" };
        case `${DYN}StoredArtifact`: {
            const rel = `images/${inputs.name}/${inputs.version}/${inputs.name}-${inputs.version}.qcow2`;
            return { ...inputs, path: `${inputs.storeRoot}/${rel}`, relPath: rel, url: `${inputs.baseUrl}/${rel}`, sha256Url: `${inputs.baseUrl}/${rel}.sha256` };
        }
        case `${DYN}OciPush`:
            return { ...inputs, ref: `oci://${inputs.registry}/${inputs.repository}:${(inputs.tags as string[])[0]}`, manifestDigest: `sha256:${fakeSha(name)}`, layerDigest: `sha256:${inputs.sha256}`, size: 150_000_000, provenanceDigest: `sha256:${fakeSha(`${name}-prov`)}` };
        case `${DYN}GithubReleaseUpload`:
            return { ...inputs, releaseId: 7, assetId: 8, sha256AssetId: 9, sha256AssetName: `${inputs.fileName}.sha256`, sha256AssetSha256: fakeSha(`${inputs.fileName}.sha256`) };
        case `${DYN}GithubReleasePublication`: {
            const entries = inputs.entries as Array<{ image: string; tag: string; fileName: string; sumName: string }>;
            const gh = `https://github.example/${inputs.owner}/${inputs.repo}/releases`;
            return {
                ...inputs,
                tags: Object.fromEntries(entries.map((e) => [e.tag, { releaseId: 7, releaseUrl: `${gh}/tag/${e.tag}`, images: entries.filter((x) => x.tag === e.tag).map((x) => x.image) }])),
                images: Object.fromEntries(entries.map((e) => [e.image, { tag: e.tag, releaseUrl: `${gh}/tag/${e.tag}`, assetUrl: `${gh}/download/${e.tag}/${e.fileName}`, sha256AssetUrl: `${gh}/download/${e.tag}/${e.sumName}` }])),
            };
        }
        case `${DYN}ReleaseMetadata`:
            return { ...inputs, files: [], toolsJsonPath: "/repo/manifests/x.tools.json" };
        case `${DYN}PackerProxmoxTemplate`: {
            const spec = inputs.spec as { node: string; vmid: number; templateName: string };
            return { ...inputs, node: spec.node, vmid: spec.vmid, name: spec.templateName, builtAt: "2026-11-25T12:00:00.000Z", logPath: "/work/packer.log" };
        }
        case `${DYN}StoreRoot`:
            return { ...inputs, schemaVersion: 1, layout: "images/<name>/<version>/<name>-<version>.<ext>" };
        case `${DYN}BaseImageFetch`:
            return { ...inputs, path: `/cache/base/${name}.img`, sha256: fakeSha(`base:${name}`), files: {} };
        case `${DYN}TemplateRetention`:
            return { ...inputs, deleted: (inputs.retired as Array<{ vmid: number }>).map((r) => r.vmid), keptInUse: [] };
        default:
            return inputs;
    }
}

/**
 * Runs index.ts with the given stack config. `stacks` answers StackReferences by name (their outputs);
 * `version` is what every mocked build reports.
 */
export async function runProgram(stack: string, config: Record<string, unknown>, opts: {
    stacks?: Record<string, Record<string, unknown>>;
    version?: string;
    /** Called as each resource registers; a promise it returns holds that resource's creation until it settles. */
    hold?: (r: RegisteredResource) => Promise<void> | undefined;
} = {}): Promise<MockRun> {
    const resources: RegisteredResource[] = [];
    const version = opts.version ?? "v2026.11.25";
    await pulumi.runtime.setMocks({
        async newResource(args: pulumi.runtime.MockResourceArgs) {
            const registered = { type: args.type, name: args.name, inputs: args.inputs as Record<string, unknown>, provider: args.provider };
            resources.push(registered);
            await opts.hold?.(registered);
            if (args.type === "pulumi:pulumi:StackReference") {
                return { id: String(args.inputs.name), state: { name: args.inputs.name, outputs: opts.stacks?.[String(args.inputs.name)] ?? {}, secretOutputNames: [] } };
            }
            if (args.type === "proxmoxve:download/file:File") {
                return { id: `${args.inputs.nodeName}/${args.inputs.datastoreId}:import/${args.inputs.fileName}`, state: { ...args.inputs, size: 150_000_000 } };
            }
            return { id: `${args.name}-id`, state: outputsFor(args.type, args.name, args.inputs as Record<string, unknown>, version) };
        },
        call(args: pulumi.runtime.MockCallArgs) {
            return args.inputs;
        },
    }, "image-factory", stack, false, "organization");
    // As CI does (the repository variable OCI_REGISTRY): dvnt names its GHCR target by repository, not by host.
    process.env.OCI_REGISTRY ??= MOCK_OCI_REGISTRY;
    pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)])), []);
    // A fresh copy of the program and its modules for every run.
    for (const k of Object.keys(require.cache)) {
        if (k.startsWith(REPO_ROOT) && !k.includes(`${path.sep}node_modules${path.sep}`) && !k.includes(`${path.sep}test${path.sep}`)) delete require.cache[k];
    }
    const mod = require(path.join(REPO_ROOT, "index.ts")) as Record<string, unknown>;
    const outputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(mod)) {
        outputs[k] = await new Promise((resolve) => (pulumi.output(v) as pulumi.Output<unknown>).apply(resolve));
    }
    // Let registrations that nothing exported depends on finish too.
    let count = -1;
    while (count !== resources.length) {
        count = resources.length;
        await new Promise((r) => setTimeout(r, 200));
    }
    return { resources, outputs, ofType: (type) => resources.filter((r) => r.type === type) };
}
