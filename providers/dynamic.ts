// Every dynamic resource of ours gets its own type token, pulumi-nodejs:dynamic/image-factory:<Type>, so state,
// `pulumi preview` and the policy pack tell them apart without guessing from inputs.
import * as pulumi from "@pulumi/pulumi";

export const DYNAMIC_MODULE = "image-factory";

export function dynamicType(type: string): string {
    return `pulumi-nodejs:dynamic/${DYNAMIC_MODULE}:${type}`;
}

export abstract class FactoryResource extends pulumi.dynamic.Resource {
    protected constructor(
        provider: pulumi.dynamic.ResourceProvider,
        type: string,
        name: string,
        props: pulumi.Inputs,
        opts?: pulumi.CustomResourceOptions,
    ) {
        super(provider, name, props, opts, DYNAMIC_MODULE, type);
    }
}

/** Diff helper: the names of properties whose values differ (JSON comparison, order-sensitive). */
export function changedKeys(olds: Record<string, unknown>, news: Record<string, unknown>, keys: readonly string[]): string[] {
    return keys.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
}
