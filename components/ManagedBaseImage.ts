// ManagedBaseImage: a base image from images/catalog.ts, downloaded (resumable), verified, transformed and cached,
// with outputs a build can take as its base (path, sha256, id, version) and record in build.json.
import * as pulumi from "@pulumi/pulumi";
import { lookup, specHash, type ManagedImageSpec } from "../lib/baseImages/cache";
import { catalog as defaultCatalog } from "../images/catalog";
import { BaseImageFetch } from "../providers/baseImageFetch";
import { dynamicType } from "../providers/dynamic";
import { urnLabel } from "../providers/progress";

export interface ManagedBaseImageArgs {
    id: string;
    version: string;
    /** <cacheRoot>/images/<id>/<version>/ */
    cacheRoot: string;
    /** Fetch from here instead of upstream (a local mirror, or a file:// directory of the files). */
    mirror?: string;
    catalog?: readonly ManagedImageSpec[];
}

export class ManagedBaseImage extends pulumi.ComponentResource {
    readonly id: pulumi.Output<string>;
    readonly version: pulumi.Output<string>;
    readonly path: pulumi.Output<string>;
    readonly sha256: pulumi.Output<string>;
    readonly files: pulumi.Output<Record<string, { path: string; sha256: string; size: number }>>;
    readonly spec: ManagedImageSpec;

    constructor(name: string, args: ManagedBaseImageArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:base:ManagedBaseImage", name, {}, opts);
        this.spec = lookup(args.catalog ?? defaultCatalog, args.id, args.version);
        const fetch = new BaseImageFetch(`${name}-fetch`, {
            spec: this.spec,
            specHash: specHash(this.spec),
            cacheRoot: args.cacheRoot,
            mirror: args.mirror,
            logUrn: urnLabel(`${name}-fetch`, dynamicType("BaseImageFetch"), this),
        }, { parent: this, customTimeouts: { create: "60m", update: "60m" } });
        this.id = pulumi.output(args.id);
        this.version = pulumi.output(args.version);
        this.path = fetch.path;
        this.sha256 = fetch.sha256;
        this.files = fetch.files;
        this.registerOutputs({ id: this.id, version: this.version, path: this.path, sha256: this.sha256 });
    }
}
