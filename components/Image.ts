// Image: one recipe of factory:images, from recipe to published artifacts. Any recipe that makes a file (a Debian
// rootfs or Packer build into qcow2, a Raspberry Pi .img.xz, an ISO): plan (build key) → build → validate (offline
// checks, and the boot gate) → publish to each target the recipe lists (components/publish.ts). A Packer → Proxmox
// recipe makes no file: it is built on the node from the template of its base image.
//
// Older stacks knew these as Qcow2Image, PiImage, IsoImage and PackerProxmoxTemplate components: the alias to that
// type keeps every URN below an image what it was (test/e2e/upgrade.test.ts previews such a stack with no changes).
// An image reused from another lab's stack has no component (reusedImage): its resources always lived under the
// pass, and a component for it would be a new resource in every existing stack.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Pass } from "../lib/config";
import type { BuiltImageRecord } from "../lib/contract";
import { planBuild, withBase } from "../lib/stages/plan";
import { artifactFormat, buildsOnNode, SMOKE_SCRIPT, type ImageRecipe, type PackerBuilder } from "../lib/recipe";
import { sha256Hex } from "../lib/sha256";
import { allocateVmid } from "../lib/publish/vmids";
import { dynamicType } from "../providers/dynamic";
import { ImageValidation, type BootSettings, type EvidenceSettings } from "../providers/imageValidation";
import { urnLabel } from "../providers/progress";
import { ImageBuild } from "../providers/imageBuild";
import { BuildCacheEntry } from "../providers/buildCacheEntry";
import { buildCacheSettings, entryPresent, type BuildCacheInput } from "../lib/buildCache";
import { cachedResult } from "../lib/stages/pipeline";
import type { SigningOptions } from "../lib/evidence/packet";
import { ReusedArtifact } from "../providers/reusedArtifact";
import type { BuiltArtifact } from "./artifact";
import type { BootstrapPass } from "./BootstrapPass";
import type { StackContext } from "./context";
import { packerProxmoxTemplate } from "./PackerProxmoxTemplate";
import { proxmoxTemplate, publishBuiltImage, type PublishedImage, type Targets } from "./publish";

/** The base of a Packer or Pi build: another image of this stack, or a catalog entry (ManagedBaseImage). */
export interface ImageBase {
    id: string;
    version: string;
    /** Known at preview: the catalog sha256 or the base image's build key. */
    identity: string;
    path: pulumi.Input<string>;
    sha256: pulumi.Input<string>;
}

export interface ImageArgs {
    recipe: ImageRecipe;
    pass: Pass;
    stack: StackContext;
    /** The images of this stack made before this one (a base image, the cloud image a seed ISO boots with). */
    earlier: Readonly<Record<string, Image>>;
    /** What its lab-facing resources (Proxmox templates) wait for besides their inputs: the previous pass. */
    labAfter: pulumi.Resource[];
}

type TemplateRef = { node: pulumi.Output<string>; vmid: pulumi.Output<number>; name: pulumi.Output<string> };

const LEGACY_TYPES: Record<ImageRecipe["kind"], string> = {
    vm: "image-factory:image:Qcow2Image",
    "builder-node": "image-factory:image:Qcow2Image",
    pi: "image-factory:image:PiImage",
    iso: "image-factory:image:IsoImage",
};
const LEGACY_NODE_BUILT = "image-factory:proxmox:PackerProxmoxTemplate";

export class Image extends pulumi.ComponentResource {
    readonly name: string;
    /** The file built and validated; absent for a template built on the Proxmox node. */
    readonly built?: BuiltArtifact;
    /** Its publishing so far; finishPublishing adds the release once every image of its tag is up. */
    readonly published?: PublishedImage;
    /** The Proxmox template made in this run (the clone source of a Packer → Proxmox image built on it). */
    readonly template?: TemplateRef;
    /** The outputs record of a template built on the node (a built image's comes from finishPublishing). */
    readonly record?: pulumi.Output<unknown>;

    constructor(name: string, args: ImageArgs, opts?: pulumi.ComponentResourceOptions) {
        const onNode = buildsOnNode(args.recipe);
        super("image-factory:image:Image", name, {}, { ...opts, aliases: [{ type: onNode ? LEGACY_NODE_BUILT : LEGACY_TYPES[args.recipe.kind] }] });
        this.name = args.recipe.name;
        if (onNode) {
            const tpl = this.buildOnNode(args);
            this.template = tpl;
            this.record = tpl.record;
            this.registerOutputs({ node: tpl.node, vmid: tpl.vmid, name: tpl.name, derivedFrom: tpl.derivedFrom, buildKey: tpl.buildKey });
            return;
        }
        const built = this.buildAndValidate(args);
        this.built = built;
        const r = args.recipe;
        const targets: Targets = { store: r.targets.includes("store"), oci: r.targets.includes("oci"), release: r.targets.includes("release"), proxmox: r.targets.includes("proxmox") };
        this.published = publishBuiltImage(built, targets, args.stack, this, args.labAfter);
        this.template = this.published.proxmoxResource;
        this.registerOutputs({ buildKey: built.buildKey, sha256: built.sha256, size: built.size, path: built.path, version: built.version, buildInfo: built.buildInfo });
    }

    /** Plan (build key, known at preview) → one content-addressed build → the validation gate. */
    private buildAndValidate(args: ImageArgs): BuiltArtifact {
        const { recipe, stack } = args;
        const name = recipe.name;
        // Nested Inputs (the secret passphrase) resolve into one Output the providers take as a plain object.
        const evidence = pulumi.output(stack.evidence) as pulumi.Output<EvidenceSettings>;
        const base = baseOf(recipe, args);
        const workDir = stack.workDir;
        const plan = planBuild({
            recipe, projectDir: stack.projectDir, workDir, bootstrapUser: { name: stack.config.bootstrapUser.name, authorizedKeys: stack.authorizedKeys },
            domain: stack.config.domain, debian: stack.debian, versionOverride: stack.config.version,
            base: base ? { id: base.id, version: base.version, identity: base.identity } : undefined,
        });
        const request = base ? pulumi.all([base.path, base.sha256]).apply(([p, sha256]) => withBase(plan.request, { path: p, sha256 })) : plan.request;
        const build = new ImageBuild(`${name}-build`, {
            name, buildKey: plan.buildKey, request, versionOverride: stack.config.version, storeRoot: stack.store.root, projectDir: stack.projectDir,
            logUrn: urnLabel(`${name}-build`, dynamicType("ImageBuild"), this), evidence,
            ...(stack.buildCache?.pull ? { buildCache: stack.buildCache.input } : {}),
        }, { parent: this, customTimeouts: { create: "90m", update: "90m" } });
        const bootGate = bootGateOf(recipe, args);
        const validation = new ImageValidation(`${name}-validation`, {
            artifact: build.path,
            sha256: build.sha256,
            expect: pulumi.all([build.version, build.buildKey]).apply(([version, buildKey]) => ({
                image: name, version, bootstrapUser: stack.config.bootstrapUser.name, buildInfo: { buildKey },
            })),
            buildTime: build.buildInfo.apply((i) => i.buildTime),
            evidence,
            scratchDir: `${workDir}/validate`,
            ...(bootGate ? { bootGate } : {}),
            logUrn: urnLabel(`${name}-validation`, dynamicType("ImageValidation"), this),
        }, { parent: this });
        pulumi.log.info(`${name}: build key ${plan.buildKey.slice(0, 16)} (a build is reused while its key stays the same)`, this, undefined, true);
        // In a preview only (up's own preview step included): in the update the build's provider looks the key up itself.
        if (stack.buildCache?.pull && pulumi.runtime.isDryRun()) this.sayWhereFrom(name, plan.buildKey, plan.request.buildsDir, stack.buildCache.input);
        // Entries are signed with the evidence key; without one (a preview in a PR check) there is nothing to push.
        if (stack.buildCache?.push && stack.evidence.sign) {
            new BuildCacheEntry(`${name}-build-cache`, {
                cache: stack.buildCache.input, sign: pulumi.output(stack.evidence.sign) as pulumi.Output<SigningOptions>,
                name, buildKey: plan.buildKey, version: build.version, format: artifactFormat(recipe), sha256: build.sha256, size: build.size,
                virtualSize: build.virtualSize, durationSeconds: build.durationSeconds, artifact: build.path, buildJson: build.buildJsonPath,
                pkgManifest: build.pkgManifestPath, buildLog: build.logPath,
                buildEvidence: build.evidencePath.apply((p) => p ?? undefined) as pulumi.Output<string | undefined>,
                validationEvidence: validation.evidencePath,
                gate: pulumi.all([validation.passed, validation.checksRan, validation.checks, validation.boot, validation.bootReportKey]).apply(([passed, checksRan, checks, boot, reportKey]) => ({
                    passed, checksRan, checks: checks.map((c) => ({ id: c.id, status: c.status })),
                    ...(boot && reportKey ? { boot: { reportKey, passed: boot.passed, accelerator: boot.accelerator, totalSeconds: boot.totalSeconds } } : {}),
                })),
                logUrn: urnLabel(`${name}-build-cache`, dynamicType("BuildCacheEntry"), this),
            }, { parent: this });
        }
        return {
            name, format: artifactFormat(recipe), buildKey: plan.buildKey, build, validation,
            sha256: build.sha256, size: build.size, virtualSize: build.virtualSize, path: build.path, version: build.version, buildInfo: build.buildInfo,
            logPath: build.logPath, pkgManifestPath: build.pkgManifestPath, buildJsonPath: build.buildJsonPath, evidencePath: build.evidencePath,
        };
    }

    /**
     * Preview says where a build of this key will come from: this machine's builds, the shared build cache
     * (verified when it is pulled), or a build here. The engine creates the build only when the key is new to the stack.
     */
    private sayWhereFrom(name: string, buildKey: string, buildsDir: string, input: pulumi.Output<BuildCacheInput>): void {
        const key = buildKey.slice(0, 16);
        input.apply(async (c) => {
            if (cachedResult(buildsDir, name, buildKey)) {
                pulumi.log.info(`${name}: build key ${key} is already built on this machine: not pulled, not built`, this);
                return;
            }
            const r = await entryPresent(buildCacheSettings(c), name, buildKey);
            const line = r.error ? `${name}: the build cache (${r.ref}) cannot be read (${r.error}): build key ${key} would be built here`
                : r.present ? `${name}: build key ${key} comes from the build cache (${r.ref}), verified before use: not built here`
                    : `${name}: build key ${key} is not in the build cache (${r.ref}): built here`;
            pulumi.log.info(line, this);
        });
    }

    /** A Packer → Proxmox image (FR-2): built on the node from its base image's template; no file, no store. */
    private buildOnNode(args: ImageArgs) {
        const { recipe, stack, pass } = args;
        const b = recipe.builder as PackerBuilder;
        const p = stack.config.proxmox;
        const baseName = "image" in b.base ? b.base.image : "";
        const base = args.earlier[baseName]?.built;
        const baseTemplate = args.earlier[baseName]?.template;
        if (!p?.enabled || !stack.proxmox) throw new pulumi.RunError(`images/${recipe.name} builds on a Proxmox node: the stack needs factory:proxmox`);
        if (!base || !baseTemplate) {
            throw new pulumi.RunError(`images/${recipe.name} clones the template of ${baseName || JSON.stringify(b.base)}: list that image (with the proxmox target) before it in factory:images`);
        }
        if (!p.packerSshKeyFile) throw new pulumi.RunError(`images/${recipe.name}: set factory:proxmox.packerSshKeyFile (the bootstrap user's private key Packer logs in with)`);
        // One id per base version (a new base version makes a new template beside the old one); never the id of the
        // template it clones.
        const vmid = pulumi.all([stack.proxmox.previous, base.version, baseTemplate.vmid, stack.proxmox.cluster]).apply(([prev, version, cloneId, cluster]) => allocateVmid(recipe.name, version,
            [...prev, { image: baseName, version: "clone-source", vmid: cloneId, name: "", sha256: "" }], { range: p.vmidRange, blocks: p.vmids, keepLast: p.keepLast }, cluster));
        const tpl = packerProxmoxTemplate(recipe.name, {
            recipe, projectDir: stack.projectDir, workDir: stack.workDir, apiToken: stack.proxmox.apiToken, vmid, bootstrapUser: stack.config.bootstrapUser.name,
            proxmox: { endpoint: p.endpoint, insecure: p.insecure, node: p.node, bridge: p.bridge, diskStorage: p.diskStorage, namePattern: p.namePattern, sshKeyFile: p.packerSshKeyFile },
            base: { version: base.version, sha256: base.sha256, templateName: baseTemplate.name },
        }, this, args.labAfter);
        // No sha256: the disk was changed on the node and its bytes never pass through the factory, so there is no digest
        // it can vouch for; what it was made from is derivedFrom. Nor did the gate run: it needs the bytes.
        const record = pulumi.output({
            pass, format: "proxmox-template", version: base.version, sha256: null, derivedFrom: base.sha256, buildKey: tpl.buildKey, builtOn: p.node,
            proxmox: { node: tpl.node, vmid: tpl.vmid, name: tpl.name },
            validation: { checksRan: [], note: `built on ${p.node} by Packer from ${baseName}'s template: not checked offline, not booted by the boot gate` },
        });
        return { ...tpl, record: record as pulumi.Output<unknown> };
    }
}

/** A Packer or Pi build's base: an image built earlier in this run, or a catalog entry (ManagedBaseImage). */
function baseOf(recipe: ImageRecipe, args: ImageArgs): ImageBase | undefined {
    const b = recipe.builder;
    if (b.kind !== "packer" && b.kind !== "pi") return undefined;
    if ("image" in b.base) {
        const from = args.earlier[b.base.image]?.built;
        if (!from) {
            throw new pulumi.RunError(`images/${recipe.name}: its base image ${b.base.image} is not built by this stack before it: ` +
                `list ${b.base.image} in factory:images (in the same or an earlier pass, and before ${recipe.name})`);
        }
        return { id: `image:${b.base.image}`, version: "this-stack", identity: from.buildKey, path: from.path, sha256: from.sha256 };
    }
    const { image, identity } = args.stack.baseImage(b.base.catalog, b.base.version);
    return { id: b.base.catalog, version: b.base.version, identity, path: image.path, sha256: image.sha256 };
}

/**
 * The boot gate's settings for an image, or undefined. x86 disk images boot themselves; a NoCloud seed ISO boots with
 * a cloud image this stack built before it; the installer ISO and the arm64 Pi images are proven by opt-in boots.
 */
function bootGateOf(recipe: ImageRecipe, args: ImageArgs): pulumi.Input<BootSettings> | undefined {
    const { config, authorizedKeys, projectDir } = args.stack;
    const own = config.validation.images[recipe.name] ?? {};
    if (!(own.boot ?? config.validation.boot)) return undefined;
    const b = recipe.builder;
    if (b.kind === "iso" && b.flavour === "nocloud-seed") {
        const base = Object.values(args.earlier).map((i) => i.built).find((i) => i?.format === "qcow2");
        if (!base) return undefined; // no cloud image built before it in this stack: offline checks only
        return pulumi.all([base.path, base.sha256]).apply(([baseImage, baseSha256]) => ({
            timeoutSeconds: own.bootTimeoutSeconds ?? config.validation.bootTimeoutSeconds,
            hostname: b.hostname ?? recipe.name,
            seed: { baseImage, baseSha256, authorizedKeys },
        }));
    }
    if (recipe.kind !== "vm" && recipe.kind !== "builder-node") return undefined;
    const smoke = path.join(projectDir, "images", recipe.name, SMOKE_SCRIPT);
    const smokeScript = fs.existsSync(smoke) ? smoke : undefined;
    return {
        timeoutSeconds: own.bootTimeoutSeconds ?? config.validation.bootTimeoutSeconds,
        // Not the image's own hostname: the check proves the seed's took effect.
        hostname: `boot-${recipe.name}`.slice(0, 63),
        ...(smokeScript ? { smokeScript, smokeSha256: sha256Hex(fs.readFileSync(smokeScript)) } : {}),
    };
}

/** An image built by another lab's stack (factory:reuse): its published artifact, registered here (Proxmox) only. */
export function reusedImage(recipe: ImageRecipe, pass: Pass, stack: StackContext, bootstrap: BootstrapPass): pulumi.Output<unknown> {
    const reuse = stack.config.reuse;
    if (!reuse || !stack.reusedFrom) throw new Error(`reusedImage(${recipe.name}) without factory:reuse`);
    const theirs = stack.reusedFrom.getOutput("images").apply((all) => {
        // Another stack's outputs (getOutput is untyped): its built images' records, per the contract.
        const i = (all as Record<string, BuiltImageRecord> | undefined)?.[recipe.name];
        if (!i) {
            throw new Error(`factory:reuse: ${reuse.stack} has no image ${recipe.name} in its outputs: ` +
                `run pulumi up on that stack first, or take ${recipe.name} out of factory:reuse.images to build it here`);
        }
        return i;
    });
    // The digest and URL go through a ReusedArtifact record, so the policy pack can see where they come from.
    const record = new ReusedArtifact(`${recipe.name}-reused`, {
        stack: reuse.stack, image: recipe.name, version: theirs.version, sha256: theirs.sha256,
        url: theirs.apply((i) => (stack.config.proxmox?.imageSource === "release" ? i.releaseAssetUrl : i.qcow2Url) ?? ""),
    }, { parent: bootstrap });
    const tpl = recipe.targets.includes("proxmox") && stack.proxmox
        ? proxmoxTemplate(recipe.name, { version: record.version, sha256: record.sha256, buildInfo: theirs.buildInfo, url: record.url }, stack,
            { ...bootstrap.childOptions(), dependsOn: bootstrap.labAfter })
        : undefined;
    return pulumi.output({
        pass, reusedFrom: reuse.stack, version: theirs.version, sha256: theirs.sha256, size: theirs.size, qcow2Url: theirs.qcow2Url,
        proxmox: tpl ? { node: tpl.node, vmid: tpl.vmid, name: tpl.name } : null, proxmoxTemplates: tpl?.kept ?? null,
    });
}

