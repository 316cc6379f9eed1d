// What every image of a stack shares, made once from the stack config: the validated config and recipes, the
// artifact store, credentials (Pulumi secrets, else the environment), the Proxmox provider and its access check,
// the managed base images, and the other lab's stack for reused images. Not a component: these resources keep the
// places in the state they always had (the store and base images at the top, the provider beside them).
import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { catalog as baseImageCatalog } from "../images/catalog";
import { resolveDebianSource } from "../lib/aptSources";
import { lookup, specHash } from "../lib/baseImages/cache";
import { BOOT_GATE_COMMANDS } from "../lib/validation/bootCheck";
import type { DebianSource } from "../lib/aptSources";
import { checkCommands } from "../lib/stages/requiredCommands";
import { ConfigError, CONFIG_NAMESPACE, parseConfig, readNamespace, resolveAuthorizedKeys, type FactoryConfig } from "../lib/config";
import { isUserError } from "../lib/errors";
import { signingFromEnv } from "../lib/evidence/packet";
import { gitRemoteUrl } from "../lib/git";
import { orasBinary } from "../lib/publish/oci";
import { buildCacheInputOf, type BuildCacheInput } from "../lib/buildCache";
import { loadRecipe, type ImageRecipe } from "../lib/recipe";
import type { ClusterVm, TemplateRecord } from "../lib/publish/vmids";
import { ProxmoxAccess } from "../providers/proxmoxAccess";
import { ArtifactStore } from "./ArtifactStore";
import { ManagedBaseImage } from "./ManagedBaseImage";
import type { PublishContext } from "./publish";

/** Runs `fn`; a UserError (its message names the fix) becomes a plain engine error without a stack trace. */
function attempt<T>(fn: () => T): T {
    try {
        return fn();
    } catch (err) {
        if (isUserError(err)) throw new pulumi.RunError(err.message);
        throw err;
    }
}

export interface StackContext extends PublishContext {
    projectDir: string;
    /** factory:workDir, absolute: builds, package caches, validation scratch. */
    workDir: string;
    recipes: ImageRecipe[];
    /** Images this stack takes from another lab's stack (factory:reuse) instead of building. */
    reused: Set<string>;
    reusedFrom?: pulumi.StackReference;
    authorizedKeys: string[];
    debian: DebianSource;
    evidence: { root: string; sign?: { keyId: string; passphrase?: pulumi.Input<string>; gnupgHome?: string } };
    /** Base images by `<id>@<version>`: those of factory:baseImages, and any a recipe names (made on first use). */
    baseImages: Record<string, ManagedBaseImage>;
    baseImage(id: string, version: string): { image: ManagedBaseImage; identity: string };
    /** factory:buildCache, when it pulls or pushes (lib/buildCache.ts); the password makes the whole input secret. */
    buildCache?: { pull: boolean; push: boolean; input: pulumi.Output<BuildCacheInput> };
}

export function stackContext(projectDir: string): StackContext {
    const resolve = (p: string) => path.resolve(projectDir, p);
    const config: FactoryConfig = attempt(() => parseConfig(readNamespace(pulumi.runtime.allConfig())));
    const reused = new Set(config.reuse?.images ?? []);
    const recipes = attempt(() => config.images.map((name) => loadRecipe(name, path.join(projectDir, "images"))));
    const built = recipes.filter((r) => !reused.has(r.name));
    const authorizedKeys = recipes.length > 0 ? attempt(() => resolveAuthorizedKeys(config.bootstrapUser, projectDir, config.lab)) : [];
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

    const store = new ArtifactStore("artifacts", {
        root: resolve(config.artifactStore.root),
        baseUrl: config.artifactStore.publicBaseUrl ?? `http://${config.artifactStore.host}:${config.artifactStore.port}`,
    });

    // EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY=<id>: the passphrase is the secret factory:gpgPassphrase (or EVIDENCE_GPG_PASSPHRASE).
    const signing = attempt(() => signingFromEnv(process.env));
    const evidence = {
        root: resolve(config.evidence.dir),
        sign: signing ? { keyId: signing.keyId, gnupgHome: signing.gnupgHome, passphrase: secrets.getSecret("gpgPassphrase") ?? envSecret("EVIDENCE_GPG_PASSPHRASE") } : undefined,
    };

    const baseImages: Record<string, ManagedBaseImage> = {};
    const managed = (id: string, version: string) => (baseImages[`${id}@${version}`] ??= new ManagedBaseImage(`base-${id}-${version}`, {
        id, version, cacheRoot: resolve(config.baseImageCache), mirror: config.baseImageMirror ?? process.env.IMAGE_FACTORY_BASE_IMAGE_MIRROR,
    }));
    for (const b of config.baseImages) attempt(() => managed(b.id, b.version));

    const ociPassword = secrets.getSecret("ghcrToken") ?? envSecret("GHCR_TOKEN");
    const buildCache = attempt(() => buildCacheContext(config, resolve, ociPassword, { scratchDir: path.join(resolve(config.workDir), "validate"), evidenceRoot: evidence.root },
        !!evidence.sign, built.length > 0));
    return {
        buildCache,
        config,
        store,
        resolve,
        projectDir,
        workDir: resolve(config.workDir),
        recipes,
        reused,
        reusedFrom: config.reuse ? new pulumi.StackReference("reuse", { name: config.reuse.stack }) : undefined,
        authorizedKeys,
        debian,
        evidence,
        sourceUrl: gitRemoteUrl(projectDir),
        githubToken: secrets.getSecret("githubToken") ?? envSecret("GITHUB_TOKEN"),
        ociCredentials: ociPassword ? { username: config.oci?.username ?? process.env.GHCR_USERNAME ?? process.env.GITHUB_ACTOR, password: ociPassword } : undefined,
        primaryImage: config.release?.primaryImage ?? config.images[0],
        proxmox: proxmoxContext(config, secrets.getSecret("proxmoxApiToken") ?? envSecret("PROXMOX_VE_API_TOKEN")),
        bootstrapUser: { name: config.bootstrapUser.name, keys: authorizedKeys },
        baseImages,
        baseImage(id, version) {
            const spec = attempt(() => lookup(baseImageCatalog, id, version));
            return { image: managed(id, version), identity: specHash(spec) };
        },
    };
}

/** Proxmox: the provider, and the templates this stack kept on earlier runs (read from its own last outputs). */
function proxmoxContext(config: FactoryConfig, apiToken: pulumi.Output<string> | undefined): PublishContext["proxmox"] {
    const p = config.proxmox;
    if (!p?.enabled) return undefined;
    const provider = new proxmoxve.Provider("proxmox", { endpoint: p.endpoint, apiToken, insecure: p.insecure });
    const access = new ProxmoxAccess("proxmox-access", {
        endpoint: p.endpoint, apiToken: apiToken ? pulumi.secret(apiToken) : undefined, insecure: p.insecure,
        node: p.node, imageStorage: p.imageStorage, diskStorage: p.diskStorage, bridge: p.bridge,
    });
    const self = new pulumi.StackReference("previous-run", { name: `${pulumi.getOrganization()}/${pulumi.getProject()}/${pulumi.getStack()}` });
    const previous = self.getOutput("proxmox").apply((out) => {
        const templates = (out as { templates?: Record<string, TemplateRecord[]> } | undefined)?.templates ?? {};
        return Object.values(templates).flat();
    });
    // The cluster's VMs (through the provider, as every other read of the node): a new template's id is one no VM
    // holds. A preview from a machine that cannot reach the node plans without them; `up` chooses with them.
    const cluster = pulumi.output(proxmoxve.getVmsLegacy({}, { provider }).then(
        (r): ClusterVm[] => (r.vms ?? []).map((v) => ({ vmid: v.vmId, name: v.name, node: v.nodeName, tags: (v.tags ?? []).join(";") })),
        (err: Error): ClusterVm[] => {
            if (!pulumi.runtime.isDryRun()) throw err;
            pulumi.log.warn(`Proxmox ${p.node}: the cluster's VMs could not be read (${err.message.split("\n")[0]}); new template ids are planned without them`);
            return [];
        }));
    return { provider, apiToken, previous, access, cluster };
}

/**
 * The build cache's settings, with the trusted keys read from their files. Pushing signs each entry with the
 * evidence key, so a stack that pushes without one is refused before anything is built (a preview only warns:
 * PR checks run without the key).
 */
function buildCacheContext(config: FactoryConfig, resolve: (p: string) => string, password: pulumi.Output<string> | undefined,
    dirs: { scratchDir: string; evidenceRoot: string }, signing: boolean, builds: boolean): StackContext["buildCache"] {
    const c = config.buildCache;
    if (!c || !(c.pull || c.push)) return undefined;
    // The password comes from the stack's secret (or GHCR_TOKEN), as a secret Output: never from the plain environment here.
    const plain = buildCacheInputOf(config, resolve, dirs, { ...process.env, GHCR_TOKEN: undefined }) as BuildCacheInput;
    if (c.push && !signing && builds) {
        const why = `${CONFIG_NAMESPACE}:buildCache.push signs each entry with the evidence key: set EVIDENCE_SIGN=1 and EVIDENCE_GPG_KEY=<key id> ` +
            `(its passphrase in ${CONFIG_NAMESPACE}:gpgPassphrase), or turn push off`;
        if (!pulumi.runtime.isDryRun()) throw new ConfigError([why]);
        pulumi.log.warn(why);
    }
    const input = pulumi.output(password ?? "").apply((pw): BuildCacheInput => ({ ...plain, ...(pw ? { password: pw } : {}) }));
    return { pull: c.pull, push: c.push, input: password ? pulumi.secret(input) : input };
}
