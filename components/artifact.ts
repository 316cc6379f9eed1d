// The shape every built image has for those that use it: publishing (components/publish.ts, ArtifactStore) and the
// images built on it. Its own file, so the components that make and take it do not import each other.
import type * as pulumi from "@pulumi/pulumi";
import type { BuildInfo } from "../lib/contract";
import type { ArtifactFormat } from "../lib/recipe";
import type { ImageValidation } from "../providers/imageValidation";
import type { ImageBuild } from "../providers/imageBuild";

/** An image built into a file and validated: what publishing and later images (as their base) use. */
export interface BuiltArtifact {
    name: string;
    format: ArtifactFormat;
    /** Known at preview time: the hash of everything that shapes the image. */
    buildKey: string;
    sha256: pulumi.Output<string>;
    size: pulumi.Output<number>;
    virtualSize: pulumi.Output<number>;
    path: pulumi.Output<string>;
    version: pulumi.Output<string>;
    buildInfo: pulumi.Output<BuildInfo>;
    logPath: pulumi.Output<string>;
    pkgManifestPath: pulumi.Output<string>;
    buildJsonPath: pulumi.Output<string>;
    build: ImageBuild;
    /** The validation gate: publish only what depends on it. */
    validation: ImageValidation;
    evidencePath: pulumi.Output<string | undefined>;
}
