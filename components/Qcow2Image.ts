// Qcow2Image: a recipe from images/<name>/ built into a checksummed qcow2, content-addressed by its build key.
import * as pulumi from "@pulumi/pulumi";
import { planBuild, type PlanArgs } from "../lib/build/plan";
import { dynamicType } from "../providers/dynamic";
import { Qcow2Build } from "../providers/qcow2Build";

export interface Qcow2ImageArgs extends PlanArgs {
    /** Absolute root of the artifact store (versions already published there are not reused). */
    storeRoot: string;
}

export class Qcow2Image extends pulumi.ComponentResource {
    readonly name: string;
    /** Known at preview time: the hash of everything that shapes the image. */
    readonly buildKey: string;
    readonly sha256: pulumi.Output<string>;
    readonly size: pulumi.Output<number>;
    readonly virtualSize: pulumi.Output<number>;
    readonly path: pulumi.Output<string>;
    readonly version: pulumi.Output<string>;
    readonly buildInfo: pulumi.Output<Record<string, unknown>>;
    readonly logPath: pulumi.Output<string>;
    readonly pkgManifestPath: pulumi.Output<string>;
    readonly buildJsonPath: pulumi.Output<string>;
    readonly build: Qcow2Build;

    constructor(name: string, args: Qcow2ImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:image:Qcow2Image", name, {}, opts);
        this.name = args.recipe.name;
        const plan = planBuild(args);
        this.buildKey = plan.buildKey;
        this.build = new Qcow2Build(`${name}-build`, {
            name: this.name,
            buildKey: plan.buildKey,
            request: plan.request,
            versionOverride: args.versionOverride,
            storeRoot: args.storeRoot,
            projectDir: args.projectDir,
            logUrn: pulumi.createUrn(`${name}-build`, dynamicType("Qcow2Build"), this),
        }, { parent: this, customTimeouts: { create: "90m", update: "90m" } });

        pulumi.log.info(`${this.name}: build key ${plan.buildKey.slice(0, 16)} (a build is reused while its key stays the same)`, this, undefined, true);
        this.sha256 = this.build.sha256;
        this.size = this.build.size;
        this.virtualSize = this.build.virtualSize;
        this.path = this.build.path;
        this.version = this.build.version;
        this.buildInfo = this.build.buildInfo;
        this.logPath = this.build.logPath;
        this.pkgManifestPath = this.build.pkgManifestPath;
        this.buildJsonPath = this.build.buildJsonPath;
        this.registerOutputs({
            buildKey: this.buildKey, sha256: this.sha256, size: this.size, path: this.path, version: this.version, buildInfo: this.buildInfo,
        });
    }
}
