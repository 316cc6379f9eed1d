// ArtifactStore: the builder node's artifact directory and the stable HTTP URLs it is served under (FR-9/FR-10).
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { StoreRoot } from "../providers/storeRoot";
import { StoredArtifact } from "../providers/storedArtifact";
import type { BuiltArtifact } from "./artifact";

export interface ArtifactStoreArgs {
    /** Absolute directory that holds images/<name>/<version>/... */
    root: string;
    /** Base URL the store is served under, e.g. http://127.0.0.1:8089 (no trailing slash needed). */
    baseUrl: string;
}

export class ArtifactStore extends pulumi.ComponentResource {
    /** Known when the program runs (children publish into it), so plain values; outputs of the component too. */
    readonly root: string;
    readonly baseUrl: string;
    readonly layout: pulumi.Output<string>;
    private readonly storeRoot: StoreRoot;

    constructor(name: string, args: ArtifactStoreArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:store:ArtifactStore", name, {}, opts);
        if (!path.isAbsolute(args.root)) throw new Error(`ArtifactStore ${name}: root must be absolute, got ${args.root}`);
        this.root = args.root;
        this.baseUrl = args.baseUrl.replace(/\/+$/, "");
        this.storeRoot = new StoreRoot(`${name}-root`, { root: args.root }, { parent: this });
        this.layout = this.storeRoot.layout;
        this.registerOutputs({ root: this.root, baseUrl: this.baseUrl, layout: this.layout });
    }

    /** Places an image version at its stable path and URL: images/<name>/<version>/<name>-<version>.qcow2.
     *  Only after the image passed validation: a failing image is never published. */
    publish(image: BuiltArtifact, opts: { dependsOn?: pulumi.Input<pulumi.Resource>[] } = {}): StoredArtifact {
        return new StoredArtifact(`${image.name}-stored`, {
            storeRoot: this.root,
            baseUrl: this.baseUrl,
            name: image.name,
            version: image.version,
            source: image.path,
            sha256: image.sha256,
            size: image.size,
            buildJsonPath: image.buildJsonPath,
            pkgManifestPath: image.pkgManifestPath,
            logPath: image.logPath,
            // Only when not qcow2: stores published before other formats existed see no new input (no diff).
            ...(image.format === "qcow2" ? {} : { ext: image.format }),
        }, { parent: this, dependsOn: [this.storeRoot, image.validation, ...(opts.dependsOn ?? [])] });
    }
}
