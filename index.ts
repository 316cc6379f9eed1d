// image-factory: read and validate the stack config, build the resource graph per bootstrap pass, export the
// outputs contract (schemas/outputs.schema.json). Everything else lives in components/ and lib/.
import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { ArtifactStore } from "./components/ArtifactStore";
import { BootstrapPass } from "./components/BootstrapPass";
import { ManagedBaseImage } from "./components/ManagedBaseImage";
import { finishPublishing, proxmoxTemplate, publishBuiltImage, type PublishContext, type PublishedImage } from "./components/publish";
import { IsoImage } from "./components/IsoImage";
import { PackerProxmoxTemplate } from "./components/PackerProxmoxTemplate";
import { PiImage } from "./components/PiImage";
import { Qcow2Image, type BuiltImage, type ImageBase } from "./components/Qcow2Image";
import { lookup, specHash } from "./lib/baseImages";
import { catalog as baseImageCatalog } from "./images/catalog";
import { resolveDebianSource } from "./lib/aptSources";
import { parseConfig, readNamespace, resolveAuthorizedKeys, type FactoryConfig, type Pass } from "./lib/config";
import { isUserError } from "./lib/errors";
import { signingFromEnv } from "./lib/evidence";
import { isToolMissing } from "./lib/exec";
import { gitRemoteUrl } from "./lib/git";
import { BOOT_GATE_COMMANDS } from "./lib/bootCheck";
import { checkCommands } from "./lib/build/requiredCommands";
import { orasBinary } from "./lib/oci";
import { loadRecipe, SMOKE_SCRIPT, type ImageRecipe } from "./lib/recipe";
import { allocateVmid, type TemplateRecord } from "./lib/vmids";
import type { BootSettings } from "./providers/imageValidation";
import { ProxmoxAccess } from "./providers/proxmoxAccess";
import { ReusedArtifact } from "./providers/reusedArtifact";

// Bump with any change to the shape in schemas/outputs.schema.json (its schemaVersion const too).
const OUTPUTS_SCHEMA_VERSION = 1;
const projectDir = process.cwd();
const resolve = (p: string) => path.resolve(projectDir, p);

function fail(err: unknown): never {
    // A UserError's message names the fix; RunError prints just that (a stack trace adds nothing).
    if (isUserError(err) || isToolMissing(err)) throw new pulumi.RunError(err.message);
    throw err;
}
function attempt<T>(fn: () => T): T {
    try {
        return fn();
    } catch (err) {
        fail(err);
    }
}

const config: FactoryConfig = attempt(() => parseConfig(readNamespace(pulumi.runtime.allConfig())));
const reused = new Set(config.reuse?.images ?? []);
const recipes: ImageRecipe[] = attempt(() => config.images.map((name) => loadRecipe(name, path.join(projectDir, "images"))));
const built = recipes.filter((r) => !reused.has(r.name));
const authorizedKeys = recipes.length > 0 ? attempt(() => resolveAuthorizedKeys(config.bootstrapUser, projectDir)) : [];
const debian = attempt(() => resolveDebianSource(config.debian, built.length > 0));
const secrets = new pulumi.Config("factory");
const envSecret = (name: string) => (process.env[name] ? pulumi.secret(process.env[name] as string) : undefined);

// The publishing tools, checked before any build starts (a missing oras or gpg would otherwise show only after them).
if (!pulumi.runtime.isDryRun() && built.length > 0) {
    attempt(() => {
        if (config.oci?.enabled) orasBinary();
        if (signingFromEnv(process.env)) checkCommands("evidence signing (EVIDENCE_SIGN=1)", ["gpg"]);
        if (config.validation.boot && built.some((r) => r.kind === "vm" || r.kind === "builder-node")) checkCommands("the boot gate (factory:validation.boot)", BOOT_GATE_COMMANDS);
    });
}

/**
 * The boot gate's settings for an image, or undefined. x86 disk images boot themselves; a NoCloud seed ISO boots with
 * a cloud image this stack built before it; the installer ISO and the arm64 Pi images are proven by opt-in boots.
 */
function bootGateOf(recipe: ImageRecipe): pulumi.Input<BootSettings> | undefined {
    const own = config.validation.images[recipe.name] ?? {};
    if (!(own.boot ?? config.validation.boot)) return undefined;
    const b = recipe.builder;
    if (b.kind === "iso" && b.flavour === "nocloud-seed") {
        const base = Object.values(builtImages).find((i) => i instanceof Qcow2Image && i.format === "qcow2");
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
        ...(smokeScript ? { smokeScript, smokeSha256: crypto.createHash("sha256").update(fs.readFileSync(smokeScript)).digest("hex") } : {}),
    };
}

const store = new ArtifactStore("artifacts", {
    root: resolve(config.artifactStore.root),
    baseUrl: config.artifactStore.publicBaseUrl ?? `http://${config.artifactStore.host}:${config.artifactStore.port}`,
});

/** EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY=<id>: the passphrase is the secret factory:gpgPassphrase (or EVIDENCE_GPG_PASSPHRASE). */
function evidenceSigning() {
    const env = attempt(() => signingFromEnv(process.env));
    if (!env) return undefined;
    return { keyId: env.keyId, gnupgHome: env.gnupgHome, passphrase: secrets.getSecret("gpgPassphrase") ?? envSecret("EVIDENCE_GPG_PASSPHRASE") };
}

const baseImages: Record<string, ManagedBaseImage> = {};
for (const b of config.baseImages) {
    baseImages[`${b.id}@${b.version}`] = attempt(() => new ManagedBaseImage(`base-${b.id}-${b.version}`, {
        id: b.id, version: b.version, cacheRoot: resolve(config.baseImageCache), mirror: config.baseImageMirror ?? process.env.IMAGE_FACTORY_BASE_IMAGE_MIRROR,
    }));
}

/** Proxmox: the provider, and the templates this stack kept on earlier runs (read from its own last outputs). */
function proxmoxContext(): PublishContext["proxmox"] {
    const p = config.proxmox;
    if (!p?.enabled) return undefined;
    const apiToken = secrets.getSecret("proxmoxApiToken") ?? envSecret("PROXMOX_VE_API_TOKEN");
    const provider = new proxmoxve.Provider("proxmox", { endpoint: p.endpoint, apiToken, insecure: p.insecure });
    const access = new ProxmoxAccess("proxmox-access", {
        endpoint: p.endpoint, apiToken: apiToken ? pulumi.secret(apiToken) : undefined, insecure: p.insecure,
        node: p.node, imageStorage: p.imageStorage, diskStorage: p.diskStorage,
    });
    const self = new pulumi.StackReference("previous-run", { name: `${pulumi.getOrganization()}/${pulumi.getProject()}/${pulumi.getStack()}` });
    const previous = self.getOutput("proxmox").apply((out) => {
        const templates = (out as { templates?: Record<string, TemplateRecord[]> } | undefined)?.templates ?? {};
        return Object.values(templates).flat();
    });
    return { provider, apiToken, previous, access };
}

const ctx: PublishContext = {
    config,
    store,
    resolve,
    sourceUrl: gitRemoteUrl(projectDir),
    githubToken: secrets.getSecret("githubToken") ?? envSecret("GITHUB_TOKEN"),
    ociCredentials: (() => {
        const password = secrets.getSecret("ghcrToken") ?? envSecret("GHCR_TOKEN");
        return password ? { username: config.oci?.username ?? process.env.GHCR_USERNAME ?? process.env.GITHUB_ACTOR, password } : undefined;
    })(),
    primaryImage: config.release?.primaryImage ?? config.images[0],
    proxmox: proxmoxContext(),
    bootstrapUser: { name: config.bootstrapUser.name, keys: authorizedKeys },
};
const reusedFrom = config.reuse ? new pulumi.StackReference("reuse", { name: config.reuse.stack }) : undefined;

/** A Packer or Pi build's base: an image built earlier in this run, or a catalog entry (ManagedBaseImage). */
const builtImages: Record<string, BuiltImage> = {};
function baseOf(recipe: ImageRecipe): ImageBase | undefined {
    const b = recipe.builder;
    if (b.kind !== "packer" && b.kind !== "pi") return undefined;
    if ("image" in b.base) {
        const from = builtImages[b.base.image];
        if (!from) {
            throw new pulumi.RunError(`images/${recipe.name}: its base image ${b.base.image} is not built by this stack before it: ` +
                `list ${b.base.image} in factory:images (in the same or an earlier pass, and before ${recipe.name})`);
        }
        return { id: `image:${b.base.image}`, version: "this-stack", identity: from.buildKey, path: from.path, sha256: from.sha256 };
    }
    const ref = b.base;
    const key = `${ref.catalog}@${ref.version}`;
    const spec = attempt(() => lookup(baseImageCatalog, ref.catalog, ref.version));
    baseImages[key] ??= new ManagedBaseImage(`base-${ref.catalog}-${ref.version}`, {
        id: ref.catalog, version: ref.version, cacheRoot: resolve(config.baseImageCache), mirror: config.baseImageMirror ?? process.env.IMAGE_FACTORY_BASE_IMAGE_MIRROR,
    });
    const m = baseImages[key];
    return { id: ref.catalog, version: ref.version, identity: specHash(spec), path: m.path, sha256: m.sha256 };
}
/** Proxmox templates made in this run, per image (the base of a Packer → Proxmox build). */
const templatesMade: Record<string, { node: pulumi.Output<string>; vmid: pulumi.Output<number>; name: pulumi.Output<string> }> = {};

/** A Packer → Proxmox image (FR-2): built on the node from its base image's template; no file, no store. */
function nodeBuiltTemplate(recipe: ImageRecipe, pass: Pass, opts: pulumi.ComponentResourceOptions): pulumi.Output<unknown> {
    const b = recipe.builder as Extract<ImageRecipe["builder"], { kind: "packer" }>;
    const p = config.proxmox;
    const baseName = "image" in b.base ? b.base.image : "";
    const base = builtImages[baseName];
    const baseTemplate = templatesMade[baseName];
    if (!p?.enabled || !ctx.proxmox) throw new pulumi.RunError(`images/${recipe.name} builds on a Proxmox node: the stack needs factory:proxmox`);
    if (!base || !baseTemplate) {
        throw new pulumi.RunError(`images/${recipe.name} clones the template of ${baseName || JSON.stringify(b.base)}: list that image (with the proxmox target) before it in factory:images`);
    }
    if (!p.packerSshKeyFile) throw new pulumi.RunError(`images/${recipe.name}: set factory:proxmox.packerSshKeyFile (the bootstrap user's private key Packer logs in with)`);
    // One id per base version (a new base version makes a new template beside the old one); never the id of the
    // template it clones.
    const vmid = pulumi.all([ctx.proxmox.previous, base.version, baseTemplate.vmid]).apply(([prev, version, cloneId]) => allocateVmid(recipe.name, version,
        [...prev, { image: baseName, version: "clone-source", vmid: cloneId, name: "", sha256: "" }], { range: p.vmidRange, blocks: p.vmids, keepLast: p.keepLast }));
    const tpl = new PackerProxmoxTemplate(recipe.name, {
        recipe, projectDir, workDir: resolve(config.workDir), apiToken: ctx.proxmox.apiToken, vmid, bootstrapUser: config.bootstrapUser.name,
        proxmox: { endpoint: p.endpoint, insecure: p.insecure, node: p.node, bridge: p.bridge, diskStorage: p.diskStorage, namePattern: p.namePattern, sshKeyFile: p.packerSshKeyFile as string },
        base: { version: base.version, sha256: base.sha256, templateName: baseTemplate.name },
    }, opts);
    return pulumi.output({
        pass, format: "proxmox-template", version: base.version, sha256: base.sha256, buildKey: tpl.buildKey, builtOn: p.node,
        proxmox: { node: tpl.node, vmid: tpl.vmid, name: tpl.name },
    });
}

const componentFor = { vm: Qcow2Image, "builder-node": Qcow2Image, pi: PiImage, iso: IsoImage } as const;

const images: Record<string, pulumi.Output<unknown>> = {};
const publishedImages: Record<string, PublishedImage> = {};
const passOf: Record<string, Pass> = {};
const passes: Record<string, { images: string[] }> = {};
let previous: BootstrapPass | undefined;
for (const pass of [1, 2, 3] as Pass[]) {
    if (pass > config.maxPass) break;
    const bootstrap = new BootstrapPass({ pass, previous });
    const inPass = recipes.filter((r) => r.pass === pass);
    for (const recipe of inPass) {
        const targets = {
            store: recipe.targets.includes("store"), oci: recipe.targets.includes("oci"),
            release: recipe.targets.includes("release"), proxmox: recipe.targets.includes("proxmox"),
        };
        if (reused.has(recipe.name) && reusedFrom) {
            // Built by another lab's stack: take its published artifact, register it here (Proxmox) only.
            const theirs = reusedFrom.getOutput("images").apply((all) => {
                const i = (all as Record<string, { version: string; sha256: string; size: number; qcow2Url: string | null; releaseAssetUrl: string | null; buildInfo: Record<string, unknown> }> | undefined)?.[recipe.name];
                if (!i) {
                    throw new Error(`factory:reuse: ${config.reuse?.stack} has no image ${recipe.name} in its outputs: ` +
                        `run pulumi up on that stack first, or take ${recipe.name} out of factory:reuse.images to build it here`);
                }
                return i;
            });
            // The digest and URL go through a ReusedArtifact record, so the policy pack can see where they come from.
            const record = new ReusedArtifact(`${recipe.name}-reused`, {
                stack: config.reuse?.stack ?? "", image: recipe.name, version: theirs.version, sha256: theirs.sha256,
                url: theirs.apply((i) => (config.proxmox?.imageSource === "release" ? i.releaseAssetUrl : i.qcow2Url) ?? ""),
            }, { parent: bootstrap });
            const tpl = targets.proxmox && ctx.proxmox
                ? proxmoxTemplate(recipe.name, { version: record.version, sha256: record.sha256, buildInfo: theirs.buildInfo, url: record.url }, ctx, bootstrap.childOptions())
                : undefined;
            images[recipe.name] = pulumi.output({
                pass, reusedFrom: config.reuse?.stack, version: theirs.version, sha256: theirs.sha256, size: theirs.size, qcow2Url: theirs.qcow2Url,
                proxmox: tpl ? { node: tpl.node, vmid: tpl.vmid, name: tpl.name } : null, proxmoxTemplates: tpl?.kept ?? null,
            });
            continue;
        }
        if (recipe.builder.kind === "packer" && recipe.builder.path === "proxmox") {
            images[recipe.name] = nodeBuiltTemplate(recipe, pass, bootstrap.childOptions());
            continue;
        }
        const Component = componentFor[recipe.kind];
        const image = new Component(recipe.name, {
            recipe,
            projectDir,
            workDir: resolve(config.workDir),
            storeRoot: store.rootPath,
            bootstrapUser: { name: config.bootstrapUser.name, authorizedKeys },
            domain: config.domain,
            debian,
            versionOverride: config.version,
            evidence: { root: resolve(config.evidence.dir), sign: evidenceSigning() },
            base: baseOf(recipe),
            bootGate: bootGateOf(recipe),
        }, bootstrap.childOptions());
        builtImages[recipe.name] = image;
        const published = publishBuiltImage(image, targets, ctx);
        if (published.proxmoxResource) templatesMade[recipe.name] = published.proxmoxResource;
        publishedImages[recipe.name] = published;
        passOf[recipe.name] = pass;
    }
    bootstrap.finish({ images: inPass.map((r) => r.name) });
    passes[String(pass)] = { images: inPass.map((r) => r.name) };
    previous = bootstrap;
}

for (const [name, record] of Object.entries(finishPublishing(publishedImages, ctx))) images[name] = pulumi.output({ pass: passOf[name], ...record });

export const schemaVersion = OUTPUTS_SCHEMA_VERSION;
export const lab = config.lab;
export const maxPass = config.maxPass;
export const artifactStore = { root: store.root, baseUrl: store.baseUrl, layout: store.layout };
export const baseImageCache = Object.fromEntries(Object.entries(baseImages).map(([k, b]) => [k, { path: b.path, sha256: b.sha256, files: b.files }]));
/** Templates kept per image, read back on the next run to keep VM ids stable and retire the oldest. */
export const proxmox = ctx.proxmox
    ? {
        node: config.proxmox?.node,
        templates: pulumi.output(images).apply((all) => Object.fromEntries(Object.entries(all as Record<string, { proxmoxTemplates?: TemplateRecord[] | null }>)
            .filter(([, v]) => v.proxmoxTemplates).map(([k, v]) => [k, v.proxmoxTemplates as TemplateRecord[]]))),
    }
    : null;
export { images, passes };
