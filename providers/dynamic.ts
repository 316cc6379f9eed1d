// Every dynamic resource of ours gets its own type token, pulumi-nodejs:dynamic/image-factory:<Type>, so state,
// `pulumi preview` and the policy pack tell them apart without guessing from inputs.
//
// What Pulumi serializes into each resource (its `__provider` input, kept in the state and evaluated by the
// dynamic-provider process) is a stub of a few lines, not the provider itself: the stub loads this project's
// provider module for its type and calls it. Serializing the real providers walked every function and value they
// reach through the V8 inspector — 1.4 s of a no-op run's CPU and 460 KB of state for one image (the build's alone
// 196 KB) — and froze a copy of the code into the state. With the stub, the provider process runs the checkout's
// code, like any plugin, and module-level state behaves as ordinary Node modules do.
import * as pulumi from "@pulumi/pulumi";

export const DYNAMIC_MODULE = "image-factory";

export function dynamicType(type: string): string {
    return `pulumi-nodejs:dynamic/${DYNAMIC_MODULE}:${type}`;
}

/**
 * Type token → the module (relative to this file) whose `provider` export implements it. The stub in the state
 * looks its type up here at run time, so state written by any version finds the code through this one table:
 * keep this file where it is, and when a provider module moves, change only its line here.
 */
export const PROVIDER_MODULES: Readonly<Record<string, string>> = {
    BaseImageFetch: "./baseImageFetch",
    BuildCacheEntry: "./buildCacheEntry",
    GithubReleaseUpload: "./githubRelease",
    GithubReleasePublication: "./githubReleasePublication",
    ImageValidation: "./imageValidation",
    OciPush: "./ociPush",
    PackerProxmoxTemplate: "./packerProxmoxTemplate",
    ProxmoxAccess: "./proxmoxAccess",
    ImageBuild: "./imageBuild",
    // ImageBuild's type until issue 21 (it builds ISOs and .img.xz too): state written before names it.
    Qcow2Build: "./imageBuild",
    ReleaseMetadata: "./releaseMetadata",
    ReusedArtifact: "./reusedArtifact",
    StoreRoot: "./storeRoot",
    StoredArtifact: "./storedArtifact",
    TemplateRetention: "./templateRetention",
};

/** Former type → its type now. A renamed type's resources keep their identity through an alias to the old token. */
export const FORMER_TYPES: Readonly<Record<string, string>> = {
    Qcow2Build: "ImageBuild",
};

const METHODS = ["check", "diff", "create", "read", "update", "delete"] as const;
type Method = (typeof METHODS)[number];
type AnyMethod = (...args: unknown[]) => Promise<unknown>;

/**
 * Runs in the dynamic-provider process (the engine starts it in the project directory): registers the TypeScript
 * loader and returns the provider for `type` from the project's code. Self-contained on purpose: it is serialized.
 */
export function loadProvider(type: string): Record<Method, AnyMethod | undefined> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- serialized: no imports in scope there
    const nodePath = require("node:path") as typeof import("node:path");
    const root = process.cwd();
    require(nodePath.join(root, "scripts", "require-ts-cached.js"));
    const kit = require(nodePath.join(root, "providers", "dynamic.ts")) as { PROVIDER_MODULES: Record<string, string> };
    const rel = kit.PROVIDER_MODULES[type];
    if (!rel) throw new Error(`no provider module for dynamic type ${type} in ${nodePath.join(root, "providers", "dynamic.ts")} (PROVIDER_MODULES)`);
    return (require(nodePath.join(root, "providers", rel)) as { provider: Record<Method, AnyMethod | undefined> }).provider;
}

/** The stub Pulumi serializes: the same methods as `impl` (the engine's behaviour depends on which exist). */
export function providerStub(type: string, impl: pulumi.dynamic.ResourceProvider): pulumi.dynamic.ResourceProvider {
    const stub: Partial<Record<Method, AnyMethod>> = {};
    const has = impl as Partial<Record<Method, unknown>>;
    for (const method of METHODS) {
        if (typeof has[method] !== "function") continue;
        stub[method] = (...args: unknown[]) => {
            const fn = loadProvider(type)[method];
            if (!fn) throw new Error(`the provider of ${type} has no ${method} any more`);
            return fn(...args);
        };
    }
    return stub as pulumi.dynamic.ResourceProvider;
}

export abstract class FactoryResource extends pulumi.dynamic.Resource {
    protected constructor(
        provider: pulumi.dynamic.ResourceProvider,
        type: string,
        name: string,
        props: pulumi.Inputs,
        opts?: pulumi.CustomResourceOptions,
    ) {
        super(stubFor(type, provider), name, props, opts, DYNAMIC_MODULE, type);
    }
}

/** The resource a `dynamicResource` class makes: its listed outputs, typed by the provider's outputs. */
export type DynamicResourceOf<O, K extends keyof O> = FactoryResource & { readonly [P in K]-?: pulumi.Output<O[P]> };

/** What the class is constructed with: each input of the provider, as a Pulumi input. */
export type DynamicArgs<I> = { [P in keyof I]: pulumi.Input<I[P]> };

/**
 * A dynamic resource's class from its provider, naming each output once: `outputs` are what create/update add
 * (registered as unknown until the provider answers), `shown` the inputs it also exposes as outputs. Their types
 * come from the provider's Outputs type, so a name that is not one of its outputs does not compile.
 */
export function dynamicResource<I extends object, O extends object, K extends keyof O & string, S extends keyof O & keyof I & string = never>(
    type: string,
    provider: pulumi.dynamic.ResourceProvider<I, O>,
    fields: { outputs: readonly K[]; shown?: readonly S[]; secretOutputs?: readonly (keyof I & string)[] },
): new (name: string, args: DynamicArgs<I>, opts?: pulumi.CustomResourceOptions) => DynamicResourceOf<O, K | S> {
    const unknowns = Object.fromEntries(fields.outputs.map((k) => [k, undefined]));
    class Resource extends FactoryResource {
        constructor(name: string, args: DynamicArgs<I>, opts?: pulumi.CustomResourceOptions) {
            const secrets = fields.secretOutputs?.length ? { additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), ...fields.secretOutputs] } : {};
            // A renamed type keeps its resources: the engine finds them under the old token (their state's stub
            // still names it, so PROVIDER_MODULES keeps a line for it too).
            const former = Object.keys(FORMER_TYPES).filter((t) => FORMER_TYPES[t] === type);
            const aliases = former.length ? { aliases: [...(opts?.aliases ?? []), ...former.map((t) => ({ type: dynamicType(t) }))] } : {};
            super(provider as pulumi.dynamic.ResourceProvider, type, name, { ...args, ...unknowns }, { ...opts, ...secrets, ...aliases });
        }
    }
    // The listed outputs become properties when Pulumi registers the resource (every key of its props does).
    return Resource as unknown as new (name: string, args: DynamicArgs<I>, opts?: pulumi.CustomResourceOptions) => DynamicResourceOf<O, K | S>;
}

// One stub per type: Pulumi serializes each distinct provider object once per run.
const stubs: Record<string, pulumi.dynamic.ResourceProvider> = {};
function stubFor(type: string, impl: pulumi.dynamic.ResourceProvider): pulumi.dynamic.ResourceProvider {
    if (!(type in PROVIDER_MODULES)) throw new Error(`dynamic type ${type} is missing from PROVIDER_MODULES (providers/dynamic.ts)`);
    return (stubs[type] ??= providerStub(type, impl));
}

/** Diff helper: the names of properties whose values differ (JSON comparison, order-sensitive; absent = null). */
export function changedKeys<O extends object, N extends object>(olds: O, news: N, keys: readonly (keyof O & keyof N & string)[]): string[] {
    const json = (v: unknown) => JSON.stringify(v ?? null);
    return keys.filter((k) => json(olds[k]) !== json(news[k]));
}

/**
 * Every diff of ours in one shape: a change to a `replace` key replaces the resource, to an `update` key updates
 * it in place; `also` adds what a key comparison cannot see (a file deleted behind our back, a refreshed digest).
 */
export function keyedDiff<O extends object, N extends object>(olds: O, news: N,
    keys: { replace?: readonly (keyof O & keyof N & string)[]; update?: readonly (keyof O & keyof N & string)[] },
    also: { replaces?: readonly string[]; changes?: boolean } = {}): pulumi.dynamic.DiffResult {
    const replaces = [...new Set([...changedKeys(olds, news, keys.replace ?? []), ...(also.replaces ?? [])])];
    const updates = changedKeys(olds, news, keys.update ?? []);
    return { changes: replaces.length > 0 || updates.length > 0 || also.changes === true, replaces, deleteBeforeReplace: false };
}
