// OciArtifact: a qcow2 published to an OCI registry (GHCR in the labs, a loopback registry locally) so that
// `oras pull oci://<registry>/<repository>:<version>` gives the file back; provenance travels as a referrer.
import * as pulumi from "@pulumi/pulumi";
import type { RecordedBuildInfo } from "../lib/contract";
import { inTotoStatement } from "../lib/evidence/provenance";
import { dynamicType } from "../providers/dynamic";
import { OciPush } from "../providers/ociPush";
import { urnLabel } from "../providers/progress";

export interface OciArtifactArgs {
    /** host[:port] of the registry. */
    registry: string;
    repository: string;
    /** The version tag; pushed first. */
    version: pulumi.Input<string>;
    /** Moving tags pushed too (latest, a channel name). */
    extraTags?: string[];
    /** Media type of the qcow2 layer and the artifact type: application/vnd.<vendor>.qcow2 by default. */
    mediaType: string;
    artifactType: string;
    file: pulumi.Input<string>;
    /** File name consumers see (the layer title); defaults to <name>-<version>.qcow2. */
    title: pulumi.Input<string>;
    sha256: pulumi.Input<string>;
    /** Build info of the image: commit, base image, recipe hash, tools. Feeds annotations and provenance. */
    buildInfo: pulumi.Input<RecordedBuildInfo>;
    /** Source repository URL for org.opencontainers.image.source, if known. */
    sourceUrl?: string;
    plainHttp?: boolean;
    credentials?: { username?: pulumi.Input<string>; password?: pulumi.Input<string> };
    provenance?: boolean;
    deleteOnDestroy?: boolean;
}

export class OciArtifact extends pulumi.ComponentResource {
    readonly ref: pulumi.Output<string>;
    readonly refs: pulumi.Output<string[]>;
    readonly manifestDigest: pulumi.Output<string>;
    readonly layerDigest: pulumi.Output<string>;
    readonly size: pulumi.Output<number>;
    readonly sha256: pulumi.Output<string>;
    readonly provenanceDigest: pulumi.Output<string | null>;

    constructor(name: string, args: OciArtifactArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:oci:OciArtifact", name, {}, opts);
        const annotations = pulumi.all([args.version, args.title, args.buildInfo]).apply(([version, title, i]) => {
            const a: Record<string, string> = {
                "org.opencontainers.image.title": title,
                "org.opencontainers.image.version": version,
                // Explicit, so the manifest (and its digest) is the same every time the same image is pushed.
                "org.opencontainers.image.created": i.buildTime ?? "1970-01-01T00:00:00Z",
            };
            if (i.git?.commit && i.git.commit !== "unknown") a["org.opencontainers.image.revision"] = i.git.commit;
            if (args.sourceUrl) a["org.opencontainers.image.source"] = args.sourceUrl;
            if (i.description) a["org.opencontainers.image.description"] = i.description;
            return a;
        });
        const provenance = args.provenance === false ? null
            : pulumi.all([args.title, args.sha256, args.version, args.buildInfo]).apply(([title, sha256, version, buildInfo]) =>
                inTotoStatement({ name: title, sha256, version, buildInfo }));
        const push = new OciPush(`${name}-push`, {
            registry: args.registry,
            repository: args.repository,
            tags: pulumi.output(args.version).apply((v) => [v, ...(args.extraTags ?? []).filter((t) => t !== v)]),
            file: args.file,
            title: args.title,
            sha256: args.sha256,
            mediaType: args.mediaType,
            artifactType: args.artifactType,
            annotations,
            plainHttp: args.plainHttp ?? false,
            username: args.credentials?.username,
            password: args.credentials?.password ? pulumi.secret(args.credentials.password) : undefined,
            provenance,
            deleteOnDestroy: args.deleteOnDestroy ?? false,
            logUrn: urnLabel(`${name}-push`, dynamicType("OciPush"), this),
        }, { parent: this, customTimeouts: { create: "60m", update: "60m" } });
        this.ref = push.ref;
        this.refs = push.refs;
        this.manifestDigest = push.manifestDigest;
        this.layerDigest = push.layerDigest;
        this.size = push.size;
        this.sha256 = pulumi.output(args.sha256);
        this.provenanceDigest = push.provenanceDigest;
        this.registerOutputs({ ref: this.ref, manifestDigest: this.manifestDigest, layerDigest: this.layerDigest, size: this.size, provenanceDigest: this.provenanceDigest });
    }
}
