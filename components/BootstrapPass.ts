// BootstrapPass: the images of one bring-up stage (FR-7: 1 core identity/DNS/state/network, 2 compute and
// platforms, 3 services). Pass N depends on pass N-1, so a lab comes up in order; factory:maxPass stops a run
// early, and raising it later adds resources without touching the earlier passes (their URNs never change).
import * as pulumi from "@pulumi/pulumi";
import type { Pass } from "../lib/config";

export interface BootstrapPassArgs {
    pass: Pass;
    /** The previous pass; everything in this one waits for all of it. */
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

    /** Options for a child of this pass: parented here and ordered after the previous pass. */
    childOptions(): pulumi.ComponentResourceOptions {
        return { parent: this, dependsOn: this.previous ? [this.previous] : [] };
    }

    finish(outputs: Record<string, unknown>): void {
        this.registerOutputs(outputs);
    }
}
