// Dynamic provider: one image's assets in the GitHub Release of its version tag (the qcow2 and its .sha256). The
// release is shared by every image of that version: this finds or creates its one draft (duplicates settle on the
// oldest, see lib/github ensureRelease) and uploads, but never publishes: the stack's GithubReleasePublication
// does, once every image of the tag is up. Assets GitHub already holds with the same digest are kept; a changed
// image replaces them.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { refusedCredentials } from "../lib/errors";
import { deleteAsset, ensureRelease, getAsset, githubClient, uploadAsset, type RepoRef } from "../lib/publish/github";
import { sha256sumLine } from "../lib/sha256";
import { sha256Hex } from "../lib/sha256";
import {dynamicResource, keyedDiff } from "./dynamic";
import { engineReporter } from "./progress";

export interface GithubReleaseInputs {
    apiUrl: string;
    owner: string;
    repo: string;
    /** Secret input; never part of the outputs. */
    token?: string;
    tag: string;
    releaseName: string;
    body: string;
    targetCommitish?: string;
    file: string;
    fileName: string;
    sha256: string;
    size: number;
    deleteOnDestroy: boolean;
    logUrn?: string;
}

export interface GithubReleaseOutputs extends Omit<GithubReleaseInputs, "token" | "file" | "body"> {
    releaseId: number;
    assetId: number;
    sha256AssetId: number;
    /** The .sha256 asset's name and digest, for the publication's check that everything is up. */
    sha256AssetName: string;
    sha256AssetSha256: string;
}

function client(apiUrl: string, token: string | undefined, log: (l: string) => void) {
    if (!token) throw new Error("no GitHub token: set factory:githubToken (pulumi config set --secret factory:githubToken …) or GITHUB_TOKEN");
    return githubClient({ token, baseUrl: apiUrl, log, retryDelayMs: Number(process.env.IMAGE_FACTORY_GITHUB_RETRY_MS ?? 1000) });
}

async function publish(i: GithubReleaseInputs): Promise<GithubReleaseOutputs> {
    const report = engineReporter(i.logUrn);
    const gh = client(i.apiUrl, i.token, report);
    const repo: RepoRef = { owner: i.owner, repo: i.repo };
    const { release, created } = await ensureRelease(gh, repo, i.tag, { name: i.releaseName, body: i.body, targetCommitish: i.targetCommitish });
    report(`→ ${i.owner}/${i.repo} ${i.tag}: ${created ? "created draft release" : release.draft ? "draft release exists" : "release exists"}; uploading ${i.fileName}…`);
    const asset = await uploadAsset(gh, repo, release, i.file, i.fileName, i.sha256, "application/octet-stream");
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-sum-"));
    try {
        const sumName = `${i.fileName}.sha256`;
        const sumFile = path.join(tmp, sumName);
        const line = sha256sumLine(i.sha256, i.fileName);
        fs.writeFileSync(sumFile, line);
        const sumSha = sha256Hex(line);
        const sumAsset = await uploadAsset(gh, repo, release, sumFile, sumName, sumSha, "text/plain");
        report(`→ ${i.owner}/${i.repo} ${i.tag}: ${asset.name} (${asset.digest}) and ${sumAsset.name} are up`);
        const { token: _t, file: _f, body: _b, ...rest } = i;
        return { ...rest, releaseId: release.id, assetId: asset.id, sha256AssetId: sumAsset.id, sha256AssetName: sumName, sha256AssetSha256: sumSha };
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

const REPLACE_KEYS = ["apiUrl", "owner", "repo", "tag", "fileName", "sha256"] as const;

export const provider: pulumi.dynamic.ResourceProvider<GithubReleaseInputs, GithubReleaseOutputs> = {
    async create(inputs) {
        const outs = await publish(inputs);
        return { id: `${inputs.owner}/${inputs.repo}@${inputs.tag}/${inputs.fileName}`, outs };
    },
    async diff(_id, olds, news) {
        // State written before the publication step existed lacks the .sha256 asset's record: an update fills it in
        // (the assets are there already, so it uploads nothing).
        const stale = olds.sha256AssetName === undefined;
        return keyedDiff(olds, news, { replace: REPLACE_KEYS, update: ["deleteOnDestroy", "releaseName"] }, { changes: stale });
    },
    async update(_id, olds, news) {
        if (olds.sha256AssetName === undefined) return { outs: await publish(news) };
        return { outs: { ...olds, deleteOnDestroy: news.deleteOnDestroy, releaseName: news.releaseName } };
    },
    async read(id, props) {
        if (!props) return { id: "", props: undefined };
        // Refresh gets no secret inputs: it reads with GITHUB_TOKEN when set (private repositories need it).
        const gh = githubClient({ token: process.env.GITHUB_TOKEN, baseUrl: props.apiUrl });
        const repo = { owner: props.owner, repo: props.repo };
        try {
            const asset = await getAsset(gh, repo, props.assetId);
            if (!asset || asset.digest !== `sha256:${props.sha256}`) return { id: "", props: undefined };
            const sums = await getAsset(gh, repo, props.sha256AssetId);
            if (!sums) return { id: "", props: undefined };
            return { id, props };
        } catch (err) {
            // Without a token a private repository answers 401/403/404 alike: keep the recorded state.
            if (refusedCredentials(err)) return { id, props };
            throw err;
        }
    },
    async delete(_id, props) {
        if (!props.deleteOnDestroy) return; // published assets outlive the stack unless configured otherwise
        const gh = client(props.apiUrl, process.env.GITHUB_TOKEN, () => undefined);
        for (const assetId of [props.assetId, props.sha256AssetId]) {
            if (await getAsset(gh, props, assetId)) await deleteAsset(gh, props, assetId);
        }
    },
};

export const GithubReleaseUpload = dynamicResource("GithubReleaseUpload", provider, { outputs: ["releaseId", "assetId", "sha256AssetId", "sha256AssetName", "sha256AssetSha256"], shown: ["fileName", "sha256", "size", "tag"] });
export type GithubReleaseUpload = InstanceType<typeof GithubReleaseUpload>;
