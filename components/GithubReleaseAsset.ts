// GithubReleaseAsset: an image version's files in the GitHub Release of its tag (tag = version): the qcow2 and its
// .sha256 go into the tag's draft; the stack's GithubRelease publishes the tag once every image of it is up.
// @pulumi/github has no release-asset resource; this is Octokit.
import * as pulumi from "@pulumi/pulumi";
import type { RecordedBuildInfo } from "../lib/contract";
import { dynamicType } from "../providers/dynamic";
import { GithubReleaseUpload } from "../providers/githubRelease";
import type { ReleaseEntry } from "../providers/githubReleasePublication";
import { urnLabel } from "../providers/progress";

export interface GithubReleaseAssetArgs {
    apiUrl: string;
    owner: string;
    repo: string;
    /** A Pulumi secret (factory:githubToken) or GITHUB_TOKEN; needs contents: write. */
    token?: pulumi.Input<string>;
    version: pulumi.Input<string>;
    file: pulumi.Input<string>;
    fileName: pulumi.Input<string>;
    sha256: pulumi.Input<string>;
    size: pulumi.Input<number>;
    buildInfo: pulumi.Input<RecordedBuildInfo>;
    ociRef?: pulumi.Input<string | null>;
    deleteOnDestroy?: boolean;
}

/** The release notes of a new release: what it holds and how to verify it. Deterministic. */
export function releaseBody(o: { image: string; version: string; fileName: string; sha256: string; size: number; buildInfo: RecordedBuildInfo; ociRef?: string | null }): string {
    const info = o.buildInfo;
    return [
        `## ${o.image} ${o.version}`,
        "",
        info.description ?? "",
        "",
        "| file | sha256 | bytes |",
        "|---|---|---|",
        `| \`${o.fileName}\` | \`${o.sha256}\` | ${o.size} |`,
        "",
        `Built ${info.buildTime ?? "?"} from commit \`${info.git?.commit ?? "unknown"}\` on base ${info.base?.id ?? "?"} (\`sha256:${info.base?.sha256 ?? "?"}\`).`,
        ...(o.ociRef ? ["", `Also as an OCI artifact: \`${o.ociRef}\``] : []),
        "",
        `Verify: \`sha256sum -c ${o.fileName}.sha256\``,
        "",
    ].join("\n");
}

export class GithubReleaseAsset extends pulumi.ComponentResource {
    readonly image: string;
    /** This image's part of the tag's release, for the stack's GithubRelease to check and publish. */
    readonly entry: pulumi.Output<ReleaseEntry>;
    readonly sha256: pulumi.Output<string>;
    readonly size: pulumi.Output<number>;
    readonly tag: pulumi.Output<string>;

    constructor(name: string, args: GithubReleaseAssetArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:github:GithubReleaseAsset", name, {}, opts);
        this.image = name.replace(/-release$/, "");
        const meta = pulumi.all([args.version, args.fileName, args.sha256, args.size, args.buildInfo, args.ociRef ?? null]);
        const upload = new GithubReleaseUpload(`${name}-upload`, {
            apiUrl: args.apiUrl,
            owner: args.owner,
            repo: args.repo,
            token: args.token ? pulumi.secret(args.token) : undefined,
            tag: args.version,
            releaseName: args.version,
            body: meta.apply(([version, fileName, sha256, size, buildInfo, ociRef]) =>
                releaseBody({ image: this.image, version, fileName, sha256, size, buildInfo, ociRef })),
            targetCommitish: pulumi.output(args.buildInfo).apply((i) => {
                const git = (i as { git?: { commit?: string; dirty?: boolean } }).git;
                return git?.commit && git.commit !== "unknown" && !git.dirty ? git.commit : undefined;
            }),
            file: args.file,
            fileName: args.fileName,
            sha256: args.sha256,
            size: args.size,
            deleteOnDestroy: args.deleteOnDestroy ?? false,
            logUrn: urnLabel(`${name}-upload`, dynamicType("GithubReleaseUpload"), this),
        }, { parent: this, customTimeouts: { create: "60m", update: "60m" } });
        this.sha256 = upload.sha256;
        this.size = upload.size;
        this.tag = upload.tag;
        this.entry = pulumi.all([upload.tag, upload.releaseId, upload.fileName, upload.sha256, upload.size, upload.sha256AssetName, upload.sha256AssetSha256, meta])
            .apply(([tag, releaseId, fileName, sha256, size, sumName, sumSha256, [version, , , , buildInfo, ociRef]]) => ({
                image: this.image, tag, releaseId, fileName, sha256, size, sumName, sumSha256,
                notes: releaseBody({ image: this.image, version, fileName, sha256, size, buildInfo, ociRef }),
            }));
        this.registerOutputs({ sha256: this.sha256, size: this.size, tag: this.tag });
    }
}
