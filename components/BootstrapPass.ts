// BootstrapPass: the images of one bring-up stage (FR-7: 1 core identity/DNS/state/network, 2 compute and
// platforms, 3 services). factory:maxPass stops a run early, and raising it later adds resources without touching
// the earlier passes (their URNs never change). The pass component depends on the one before, but Pulumi does not
// pass a component's dependsOn on to its children (pulumi/pulumi#1743), so an image's build, validation and
// publishing wait only for what they use (a base image, a template to clone): a pass waits only for what it
// depends on, and builds of different passes run side by side as far as the build budget allows (lib/buildBudget.ts).
import * as pulumi from "@pulumi/pulumi";
import type { Pass } from "../lib/config";

export interface BootstrapPassArgs {
    pass: Pass;
    /** The previous pass (the component waits for it; its images' resources do not). */
    previous?: BootstrapPass;
}

export class BootstrapPass extends pulumi.ComponentResource {
    readonly pass: Pass;
    private readonly previous?: BootstrapPass;

    constructor(args: BootstrapPassArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:bootstrap:BootstrapPass", `pass-${args.pass}`, { pass: args.pass }, { ...opts, dependsOn: args.previous ? [args.previous] : undefined });
        this.pass = args.pass;
        this.previous = args.previous;
    }

    /** Options for a child of this pass: parented here; the component itself is ordered after the previous pass. */
    childOptions(): pulumi.ComponentResourceOptions {
        return { parent: this, dependsOn: this.previous ? [this.previous] : [] };
    }

    finish(outputs: Record<string, unknown>): void {
        this.registerOutputs(outputs);
    }
}
