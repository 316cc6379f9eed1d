// BootstrapPass: the images of one bring-up stage (FR-7: 1 core identity/DNS/state/network, 2 compute and
// platforms, 3 services). What brings a pass into the lab — its Proxmox templates, and the templates built on the
// node — waits for all of the pass before, so a lab comes up in order. Building and validating an image waits only
// for its inputs (its base image, if that is an earlier image of this stack): pass 2 builds while pass 1 builds,
// as the machine has room (lib/buildBudget.ts). factory:maxPass stops a run early, and raising it later adds
// resources without touching the earlier passes (their URNs never change).
//
// The order is on the lab-facing resources, not on this component: the Node SDK registers a component only once
// its dependsOn have completed, and its children wait for its URN, so a dependsOn here would hold back every build
// of the pass until the pass before had finished, boot gate and publishing included.
import * as pulumi from "@pulumi/pulumi";
import type { Pass } from "../lib/config";

export interface BootstrapPassArgs {
    pass: Pass;
    /** The previous pass; what this one puts into the lab waits for all of it. */
    previous?: BootstrapPass;
}

export class BootstrapPass extends pulumi.ComponentResource {
    readonly pass: Pass;
    /** What a lab-facing resource of this pass depends on besides its inputs: the whole previous pass. */
    readonly labAfter: pulumi.Resource[];

    constructor(args: BootstrapPassArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:bootstrap:BootstrapPass", `pass-${args.pass}`, { pass: args.pass }, opts);
        this.pass = args.pass;
        this.labAfter = args.previous ? [args.previous] : [];
    }

    /** Options for an image of this pass: parented here; its build waits for nothing but its inputs. */
    childOptions(): pulumi.ComponentResourceOptions {
        return { parent: this };
    }

    finish(outputs: Record<string, unknown>): void {
        this.registerOutputs(outputs);
    }
}
