// Qcow2Image: a recipe from images/<name>/ built into a checksummed qcow2, content-addressed by its build key.
// BuiltImage is the shared body of every image component (PiImage and IsoImage have their own files and type
// tokens): one content-addressed build, then the offline validation gate that publishing depends on.
import * as pulumi from "@pulumi/pulumi";
import { planBuild, withBase, type PlanArgs } from "../lib/build/plan";
import type { ArtifactFormat } from "../lib/recipe";
import { artifactFormat } from "../lib/recipe";
import { dynamicType } from "../providers/dynamic";
import { ImageValidation, type BootSettings, type EvidenceSettings } from "../providers/imageValidation";
import { urnLabel } from "../providers/progress";
import { Qcow2Build } from "../providers/qcow2Build";

export interface EvidenceArgs {
    /** Absolute evidence root: packets go to <root>/images/vm/<image>/<version>/<UTC>/{build,validate}/. */
    root: string;
    /** EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY=<id>; the passphrase is a Pulumi secret (factory:gpgPassphrase). */
    sign?: { keyId: string; passphrase?: pulumi.Input<string>; gnupgHome?: string };
}

export interface ImageBase {
    id: string;
    version: string;
    /** Known at preview: the catalog sha256 or the base image's build key. */
    identity: string;
    path: pulumi.Input<string>;
    sha256: pulumi.Input<string>;
}

export interface Qcow2ImageArgs extends Omit<PlanArgs, "base"> {
    /** Absolute root of the artifact store (versions already published there are not reused). */
    storeRoot: string;
    evidence: EvidenceArgs;
    /** The base of a Packer or Pi build: another image of this stack or a ManagedBaseImage. */
    base?: ImageBase;
    /** The boot gate (factory:validation.boot): boot an overlay and run the smoke checks before publishing. */
    bootGate?: pulumi.Input<BootSettings>;
}

export abstract class BuiltImage extends pulumi.ComponentResource {
    readonly name: string;
    readonly format: ArtifactFormat;
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
    /** The offline validation gate: publish only what depends on it. */
    readonly validation: ImageValidation;
    readonly evidencePath: pulumi.Output<string | undefined>;

    protected constructor(type: string, name: string, args: Qcow2ImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super(type, name, {}, opts);
        // Nested Inputs (the secret passphrase) resolve into one Output the providers take as a plain object.
        const evidence = pulumi.output(args.evidence) as pulumi.Output<EvidenceSettings>;
        this.name = args.recipe.name;
        this.format = artifactFormat(args.recipe);
        const base = args.base;
        const plan = planBuild({ ...args, base: base ? { id: base.id, version: base.version, identity: base.identity } : undefined });
        const request = base
            ? pulumi.all([base.path, base.sha256]).apply(([p, sha256]) => withBase(plan.request, { path: p, sha256 }))
            : plan.request;
        this.buildKey = plan.buildKey;
        this.build = new Qcow2Build(`${name}-build`, {
            name: this.name,
            buildKey: plan.buildKey,
            request,
            versionOverride: args.versionOverride,
            storeRoot: args.storeRoot,
            projectDir: args.projectDir,
            logUrn: urnLabel(`${name}-build`, dynamicType("Qcow2Build"), this),
            evidence,
        }, { parent: this, customTimeouts: { create: "90m", update: "90m" } });

        this.validation = new ImageValidation(`${name}-validation`, {
            qcow2: this.build.path,
            sha256: this.build.sha256,
            expect: pulumi.all([this.build.version, this.build.buildKey]).apply(([version, buildKey]) => ({
                image: this.name, version, bootstrapUser: args.bootstrapUser.name, buildInfo: { buildKey },
            })),
            buildTime: this.build.buildInfo.apply((i) => (typeof i.buildTime === "string" ? i.buildTime : undefined)),
            evidence,
            scratchDir: `${args.workDir}/validate`,
            ...(args.bootGate ? { bootGate: args.bootGate } : {}),
            logUrn: urnLabel(`${name}-validation`, dynamicType("ImageValidation"), this),
        }, { parent: this });

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
        this.evidencePath = this.build.evidencePath;
        this.registerOutputs({
            buildKey: this.buildKey, sha256: this.sha256, size: this.size, path: this.path, version: this.version, buildInfo: this.buildInfo,
        });
    }
}

export class Qcow2Image extends BuiltImage {
    constructor(name: string, args: Qcow2ImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:image:Qcow2Image", name, args, opts);
    }
}
