// GithubRelease: the stack's one writer of its GitHub releases. Each image's GithubReleaseAsset uploads into the
// draft of its version tag; this publishes every tag once all of that tag's images are up and verified, with notes
// listing every image (GitHub allows duplicate drafts per tag: a draft has no tag until published; seen in ncipollo/release-action#7, so the publishing is not left to
// whichever image finishes first). Asset URLs are taken after publishing: a draft's URLs name `untagged-…`.
import * as pulumi from "@pulumi/pulumi";
import { dynamicType } from "../providers/dynamic";
import { GithubReleasePublication, type PublishedImage } from "../providers/githubReleasePublication";
import { urnLabel } from "../providers/progress";
import type { GithubReleaseAsset } from "./GithubReleaseAsset";

export interface GithubReleaseArgs {
    apiUrl: string;
    owner: string;
    repo: string;
    /** A Pulumi secret (factory:githubToken) or GITHUB_TOKEN; needs contents: write. */
    token?: pulumi.Input<string>;
    /** Every image's assets of this stack, whatever their tag. */
    assets: GithubReleaseAsset[];
}

export class GithubRelease extends pulumi.ComponentResource {
    /** Per tag: the release and the images in it. */
    readonly tags: pulumi.Output<Record<string, { releaseId: number; releaseUrl: string; images: string[] }>>;
    private readonly images: pulumi.Output<Record<string, PublishedImage>>;

    constructor(name: string, args: GithubReleaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:github:GithubRelease", name, {}, opts);
        const publication = new GithubReleasePublication(`${name}-publication`, {
            apiUrl: args.apiUrl,
            owner: args.owner,
            repo: args.repo,
            token: args.token ? pulumi.secret(args.token) : undefined,
            entries: pulumi.all(args.assets.map((a) => a.entry)),
            logUrn: urnLabel(`${name}-publication`, dynamicType("GithubReleasePublication"), this),
        }, { parent: this, dependsOn: args.assets, customTimeouts: { create: "30m", update: "30m" } });
        this.tags = publication.tags;
        this.images = publication.images;
        this.registerOutputs({ tags: this.tags });
    }

    /** Where one image's files are, once its tag is published. */
    published(image: string): pulumi.Output<PublishedImage> {
        return this.images.apply((all) => {
            const p = all[image];
            if (!p) throw new Error(`GithubRelease: ${image} is not in any published release`);
            return p;
        });
    }
}
