// Dynamic provider: the one writer that publishes the stack's GitHub releases. Every image of a version shares the
// release of its tag; each image's GithubReleaseUpload puts its assets into the tag's draft, and this resource,
// which depends on all of them, publishes each tag once: after checking that every image's file and .sha256 are in
// it with the right digest, with notes listing every image. Versions are only known once the builds ran (a cached
// build keeps the version it was made with), so this is one resource for the stack that groups its images by tag,
// not a resource per tag declared up front.
import * as pulumi from "@pulumi/pulumi";
import { deleteRelease, githubClient, listAssets, publishRelease, releasesForTag, updateRelease, type Asset, type GithubClient, type Release, type RepoRef } from "../lib/publish/github";
import {dynamicResource, keyedDiff } from "./dynamic";
import { engineReporter } from "./progress";
import { statusOf } from "../lib/errors";

/** One image's part of a release: its file and .sha256 (as uploaded) and its section of the notes. */
export interface ReleaseEntry {
    image: string;
    tag: string;
    /** The draft the upload settled on. */
    releaseId: number;
    fileName: string;
    sha256: string;
    size: number;
    sumName: string;
    sumSha256: string;
    notes: string;
}

export interface GithubReleasePublicationInputs {
    apiUrl: string;
    owner: string;
    repo: string;
    /** Secret input; never part of the outputs. */
    token?: string;
    entries: ReleaseEntry[];
    logUrn?: string;
}

export interface PublishedImage {
    tag: string;
    releaseUrl: string;
    assetUrl: string;
    sha256AssetUrl: string;
}

export interface GithubReleasePublicationOutputs extends Omit<GithubReleasePublicationInputs, "token"> {
    tags: Record<string, { releaseId: number; releaseUrl: string; images: string[] }>;
    images: Record<string, PublishedImage>;
}

const SECTION = /<!-- image:([^ ]+) -->\n[\s\S]*?<!-- \/image:\1 -->\n?/g;

/** The release notes: one marked section per image, so a later run can replace its own and keep the others'. */
export function renderNotes(tag: string, sections: Map<string, string>): string {
    const parts = [...sections.keys()].sort().map((image) => `<!-- image:${image} -->\n${(sections.get(image) ?? "").trim()}\n<!-- /image:${image} -->\n`);
    return [`# ${tag}`, "", `Images in this release: ${[...sections.keys()].sort().join(", ")}.`, "", ...parts].join("\n");
}

/** The sections of notes written by renderNotes, by image. */
export function parseNotes(body: string | null | undefined): Map<string, string> {
    const out = new Map<string, string>();
    for (const m of (body ?? "").matchAll(SECTION)) {
        out.set(m[1], m[0].replace(/^<!-- image:[^ ]+ -->\n/, "").replace(/<!-- \/image:[^ ]+ -->\n?$/, "").trim());
    }
    return out;
}

function holds(assets: Asset[], name: string, sha256: string, size?: number): Asset | undefined {
    // Assets uploaded before GitHub computed digests have `digest: null`: their size is all there is to compare.
    return assets.find((a) => a.name === name && a.state === "uploaded" && (a.digest ? a.digest === `sha256:${sha256}` : size === undefined || a.size === size));
}

async function publishTag(gh: GithubClient, repo: RepoRef, tag: string, entries: ReleaseEntry[], report: (l: string) => void):
    Promise<{ release: Release; images: Record<string, PublishedImage> }> {
    const candidates = await releasesForTag(gh, repo, tag);
    const ids = [...new Set(entries.map((e) => e.releaseId))].sort((a, b) => a - b);
    const release = candidates.find((c) => c.id === ids[0]);
    if (ids.length > 1) {
        throw new Error(`release ${tag}: the images' assets went to different releases (${ids.join(", ")}): delete the newer drafts on GitHub, then run pulumi refresh and pulumi up`);
    }
    if (!release) {
        throw new Error(`release ${tag}: release ${ids[0]}, which the assets were uploaded to, is gone from ${repo.owner}/${repo.repo}: run pulumi refresh, then pulumi up (it uploads them again)`);
    }
    const assets = await listAssets(gh, repo, release.id);
    const missing = entries.flatMap((e) => [
        ...(holds(assets, e.fileName, e.sha256, e.size) ? [] : [e.fileName]),
        ...(holds(assets, e.sumName, e.sumSha256) ? [] : [e.sumName]),
    ]);
    if (missing.length) {
        throw new Error(`release ${tag}: not published, because ${missing.join(", ")} ${missing.length > 1 ? "are" : "is"} missing or hold other bytes: ` +
            "run pulumi refresh, then pulumi up (it uploads them again)");
    }
    // Keep the sections of images published into this tag by earlier runs whose files are still there.
    const sections = new Map([...parseNotes(release.body)].filter(([image]) => assets.some((a) => a.name.startsWith(`${image}-${tag}.`))));
    for (const e of entries) sections.set(e.image, e.notes);
    const body = renderNotes(tag, sections);
    let published = release;
    if (release.draft) {
        try {
            published = await publishRelease(gh, repo, release, { name: tag, body });
        } catch (err) {
            // 422 already_exists on tag_name: another writer published a release of this tag after our uploads chose
            // the draft. Its assets are not ours to judge: say which two releases, and how to converge.
            const holder = statusOf(err) === 422 ? (await releasesForTag(gh, repo, tag)).find((c) => !c.draft && c.id !== release.id) : undefined;
            if (!holder) throw err;
            throw new Error(`release ${tag}: the draft ${release.id} that holds this run's assets cannot be published: release ${holder.id} (${holder.html_url}) ` +
                `already holds the tag (GitHub: 422 already_exists on tag_name). Delete draft ${release.id} on GitHub, then run pulumi refresh and pulumi up: ` +
                `the assets go into release ${holder.id}`);
        }
        report(`→ ${repo.owner}/${repo.repo} ${tag}: published with ${[...sections.keys()].join(", ")}`);
    } else if ((release.body ?? "") !== body) {
        published = await updateRelease(gh, repo, release, { body });
        report(`→ ${repo.owner}/${repo.repo} ${tag}: notes updated (${entries.map((e) => e.image).join(", ")})`);
    }
    // Drafts of the same tag left by an interrupted run or a lost race: empty ones go; any with files are reported.
    for (const other of candidates.filter((c) => c.id !== release.id && c.draft)) {
        const theirs = (await listAssets(gh, repo, other.id)).filter((a) => a.state === "uploaded");
        if (theirs.length === 0) await deleteRelease(gh, repo, other.id);
        else report(`→ ${repo.owner}/${repo.repo} ${tag}: draft ${other.id} also has this tag and holds ${theirs.map((a) => a.name).join(", ")}: left alone, delete it by hand`);
    }
    // Asset URLs of a draft name `untagged-…`: read them again now that the release carries its tag.
    const after = await listAssets(gh, repo, published.id);
    const images: Record<string, PublishedImage> = {};
    for (const e of entries) {
        images[e.image] = {
            tag,
            releaseUrl: published.html_url,
            assetUrl: holds(after, e.fileName, e.sha256, e.size)?.browser_download_url ?? "",
            sha256AssetUrl: holds(after, e.sumName, e.sumSha256)?.browser_download_url ?? "",
        };
    }
    return { release: published, images };
}

function isEntry(e: unknown): e is ReleaseEntry {
    const x = e as ReleaseEntry;
    return typeof e === "object" && e !== null && typeof x.image === "string" && typeof x.tag === "string" && typeof x.releaseId === "number" &&
        typeof x.sha256 === "string" && typeof x.sumSha256 === "string";
}

function byTag(entries: ReleaseEntry[]): Map<string, ReleaseEntry[]> {
    const out = new Map<string, ReleaseEntry[]>();
    for (const e of [...entries].sort((a, b) => a.image.localeCompare(b.image))) out.set(e.tag, [...(out.get(e.tag) ?? []), e]);
    return out;
}

function client(i: GithubReleasePublicationInputs, log: (l: string) => void): GithubClient {
    if (!i.token) throw new Error("no GitHub token: set factory:githubToken (pulumi config set --secret factory:githubToken …) or GITHUB_TOKEN");
    return githubClient({ token: i.token, baseUrl: i.apiUrl, log, retryDelayMs: Number(process.env.IMAGE_FACTORY_GITHUB_RETRY_MS ?? 1000) });
}

/** Publishes the tags in `only` (all when undefined); the others keep what `previous` recorded. */
async function publishAll(i: GithubReleasePublicationInputs, only?: Set<string>, previous?: GithubReleasePublicationOutputs): Promise<GithubReleasePublicationOutputs> {
    const report = engineReporter(i.logUrn);
    const gh = client(i, report);
    const repo = { owner: i.owner, repo: i.repo };
    const { token: _t, ...rest } = i;
    const out: GithubReleasePublicationOutputs = { ...rest, tags: {}, images: {} };
    for (const [tag, entries] of byTag(i.entries)) {
        const kept = previous?.tags[tag];
        if (only && !only.has(tag) && kept) {
            out.tags[tag] = { ...kept, images: entries.map((e) => e.image) };
            for (const e of entries) out.images[e.image] = previous.images[e.image];
            continue;
        }
        const { release, images } = await publishTag(gh, repo, tag, entries, report);
        out.tags[tag] = { releaseId: release.id, releaseUrl: release.html_url, images: entries.map((e) => e.image) };
        Object.assign(out.images, images);
    }
    return out;
}

/** The tags whose entries differ between two runs (new, changed, or not recorded as published). */
function changedTags(olds: GithubReleasePublicationOutputs, news: GithubReleasePublicationInputs): Set<string> {
    const before = byTag(olds.entries ?? []);
    const out = new Set<string>();
    for (const [tag, entries] of byTag(news.entries)) {
        if (!olds.tags?.[tag] || JSON.stringify(before.get(tag)) !== JSON.stringify(entries)) out.add(tag);
    }
    return out;
}

export const provider: pulumi.dynamic.ResourceProvider<GithubReleasePublicationInputs, GithubReleasePublicationOutputs> = {
    async create(inputs) {
        return { id: `${inputs.owner}/${inputs.repo}#releases`, outs: await publishAll(inputs) };
    },
    async diff(_id, olds, news) {
        // In a preview, an image that will be rebuilt or re-uploaded has an entry that is not known yet (the
        // engine's unknown sentinel, not an object): that alone means the publication changes.
        const entries: unknown = news.entries;
        const unknown = !Array.isArray(entries) || !entries.every(isEntry);
        return keyedDiff(olds, news, { replace: ["apiUrl", "owner", "repo"] }, { changes: unknown || changedTags(olds, news).size > 0 });
    },
    async update(_id, olds, news) {
        return { outs: await publishAll(news, changedTags(olds, news), olds) };
    },
    async read(id, props) {
        if (!props) return { id: "", props: undefined };
        // Refresh gets no secret inputs: it reads with GITHUB_TOKEN when set. A tag whose release is gone or back to
        // a draft is dropped from the record, so the next up publishes it again.
        const gh = githubClient({ token: process.env.GITHUB_TOKEN, baseUrl: props.apiUrl });
        const repo = { owner: props.owner, repo: props.repo };
        const tags: GithubReleasePublicationOutputs["tags"] = {};
        for (const [tag, t] of Object.entries(props.tags ?? {})) {
            try {
                const now = (await releasesForTag(gh, repo, tag)).find((r) => r.id === t.releaseId && !r.draft);
                if (now) tags[tag] = t;
            } catch (err) {
                // Without a token a private repository answers 401/403/404 alike: keep the recorded state.
                if ((err as { status?: number }).status === 401 || (err as { status?: number }).status === 403) tags[tag] = t;
                else throw err;
            }
        }
        return { id, props: { ...props, tags } };
    },
    async delete() {
        // Published releases outlive the stack (README): each image's upload resource removes its own assets when
        // factory:release.deleteOnDestroy is set; the release itself stays.
    },
};

export const GithubReleasePublication = dynamicResource("GithubReleasePublication", provider, { outputs: ["tags", "images"] });
export type GithubReleasePublication = InstanceType<typeof GithubReleasePublication>;
