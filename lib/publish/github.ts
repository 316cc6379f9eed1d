// GitHub Releases through Octokit (with its retry and throttling plugins): find or create a release for a tag
// (as a draft), upload assets streaming from disk with retries, compare GitHub's asset digests to skip what is
// already there, publish the release once its assets are up. Errors name the fix.
import type { Octokit } from "@octokit/rest";
import * as fs from "node:fs";
import { HttpStatusError, statusOf } from "../errors";
import { backoffMs, sleep } from "../backoff";
import { streamingFetch } from "./streamingFetch";

export const MAX_ASSET_BYTES = 2 * 1024 ** 3 - 1; // GitHub refuses release assets of 2 GiB and more

export interface RepoRef {
    owner: string;
    repo: string;
}

export interface Release {
    id: number;
    tag_name: string;
    draft: boolean;
    html_url: string;
    upload_url: string;
    name?: string | null;
    body?: string | null;
}

export interface Asset {
    id: number;
    name: string;
    size: number;
    state: string;
    digest?: string | null;
    browser_download_url: string;
    url: string;
}

export interface GithubClientOptions {
    /** Empty or undefined: anonymous (public repositories only). */
    token?: string;
    baseUrl?: string;
    log?: (line: string) => void;
    /** Backoff base for retries (tests use a few ms). */
    retryDelayMs?: number;
    /**
     * The longest rate-limit wait (primary or secondary) the client sits out before retrying; a longer one fails
     * at once naming the reset time. Default DEFAULT_MAX_RATE_LIMIT_WAIT_S, or IMAGE_FACTORY_GITHUB_MAX_WAIT_S.
     */
    maxRateLimitWaitSeconds?: number;
    /** Rate-limit waits sat out per request before giving up. */
    maxRateLimitRetries?: number;
    /** The clock the log lines and messages use (tests pin it). */
    now?: () => number;
}

/** 15 minutes: GitHub's secondary limits ask for a minute or so; a primary reset can be up to an hour away. */
export const DEFAULT_MAX_RATE_LIMIT_WAIT_S = 15 * 60;
const DEFAULT_MAX_RATE_LIMIT_RETRIES = 3;

interface RateLimitPolicy {
    maxWaitSeconds: number;
    maxRetries: number;
    now: () => number;
    log: (line: string) => void;
}

/**
 * The throttling plugin's question "retry after `retryAfter` seconds?": yes only for a short wait and a few
 * times, each wait logged with the UTC time it ends; no otherwise, so the request fails and explainGithubError
 * names the reset time and the fix instead of the client sleeping until then.
 */
export function rateLimitDecision(p: RateLimitPolicy, kind: "rate limit" | "secondary rate limit", retryAfter: number, request: string, retryCount: number): boolean {
    const until = new Date(p.now() + retryAfter * 1000).toISOString();
    if (retryAfter > p.maxWaitSeconds) {
        p.log(`GitHub ${kind} on ${request}: it lifts at ${until}, in ${retryAfter}s, longer than the ${p.maxWaitSeconds}s this client waits; failing now`);
        return false;
    }
    if (retryCount >= p.maxRetries) {
        p.log(`GitHub ${kind} on ${request} again after ${retryCount} waits; giving up`);
        return false;
    }
    p.log(`GitHub ${kind} on ${request}; waiting ${retryAfter}s until ${until} (wait ${retryCount + 1} of at most ${p.maxRetries})`);
    return true;
}

export type GithubClient = Octokit & { retryDelayMs: number; logLine: (line: string) => void };

/**
 * Octokit with its retry and throttling plugins, loaded when a client is made: this module runs inside dynamic
 * providers, whose code is serialized, and a captured Octokit class (an ES module) cannot be serialized, while a
 * require() at call time simply loads it in the provider process.
 */
function octokitClass() {
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { Octokit: Base } = require("@octokit/rest") as typeof import("@octokit/rest");
    const { retry } = require("@octokit/plugin-retry") as typeof import("@octokit/plugin-retry");
    const { throttling } = require("@octokit/plugin-throttling") as typeof import("@octokit/plugin-throttling");
    /* eslint-enable @typescript-eslint/no-require-imports */
    return Base.plugin(retry, throttling);
}

export function githubClient(o: GithubClientOptions): GithubClient {
    const log = o.log ?? (() => undefined);
    const envWait = Number(process.env.IMAGE_FACTORY_GITHUB_MAX_WAIT_S);
    const policy: RateLimitPolicy = {
        maxWaitSeconds: o.maxRateLimitWaitSeconds ?? (Number.isFinite(envWait) && envWait >= 0 && process.env.IMAGE_FACTORY_GITHUB_MAX_WAIT_S ? envWait : DEFAULT_MAX_RATE_LIMIT_WAIT_S),
        maxRetries: o.maxRateLimitRetries ?? DEFAULT_MAX_RATE_LIMIT_RETRIES,
        now: o.now ?? Date.now,
        log,
    };
    const GithubOctokit = octokitClass();
    const client = new GithubOctokit({
        ...(o.token ? { auth: o.token } : {}),
        baseUrl: (o.baseUrl ?? "https://api.github.com").replace(/\/+$/, ""),
        userAgent: "image-factory",
        // Asset uploads stream from the file (Node's fetch would read it all into memory first).
        request: { fetch: streamingFetch },
        log: { debug: () => undefined, info: () => undefined, warn: (m: string) => log(m), error: (m: string) => log(m) },
        // 429 is the throttling plugin's (it honours Retry-After and asks rateLimitDecision); the retry plugin
        // sits inside it and would otherwise retry a 429 at once on its own backoff.
        retry: { retryAfterBaseValue: o.retryDelayMs ?? 1000, doNotRetry: [400, 401, 403, 404, 410, 422, 429, 451] },
        throttle: {
            // The plugin waits retryAfter × this many ms: real seconds, whatever the retry backoff base is.
            retryAfterBaseValue: 1000,
            onRateLimit: (retryAfter: number, options: { method: string; url: string }, _o: unknown, retryCount: number) =>
                rateLimitDecision(policy, "rate limit", retryAfter, `${options.method} ${options.url}`, retryCount),
            onSecondaryRateLimit: (retryAfter: number, options: { method: string; url: string }, _o: unknown, retryCount: number) =>
                rateLimitDecision(policy, "secondary rate limit", retryAfter, `${options.method} ${options.url}`, retryCount),
        },
    });
    return Object.assign(client as unknown as Octokit, { retryDelayMs: o.retryDelayMs ?? 1000, logLine: log });
}

/** What Octokit's RequestError carries that we read. */
interface OctokitFailure {
    status?: number;
    message?: string;
    response?: { data?: { message?: string; errors?: Array<{ code?: string; field?: string; resource?: string; message?: string }> }; headers?: Record<string, string> };
}

const RATE_LIMIT_FIX = "wait until then and run `pulumi up` again, or use another token with its own quota (factory:githubToken or GITHUB_TOKEN)";

/** The message for a 403/429 that is a rate limit (primary: x-ratelimit-remaining 0; secondary: Retry-After), else undefined. */
function rateLimitMessage(e: OctokitFailure, what: string, now: () => number): string | undefined {
    const h = e.response?.headers ?? {};
    if (h["x-ratelimit-remaining"] === "0" && h["x-ratelimit-reset"]) {
        const reset = Number(h["x-ratelimit-reset"]) * 1000;
        return `${what}: GitHub rate limit exhausted (${e.status}); it resets at ${new Date(reset).toISOString()} (in ${formatWait(reset - now())}): ${RATE_LIMIT_FIX}`;
    }
    const retryAfter = Number(h["retry-after"]);
    if (h["retry-after"] !== undefined && Number.isFinite(retryAfter)) {
        return `${what}: GitHub secondary rate limit (${e.status}); retry after ${new Date(now() + retryAfter * 1000).toISOString()} (in ${formatWait(retryAfter * 1000)}): ${RATE_LIMIT_FIX}`;
    }
    return undefined;
}

function formatWait(ms: number): string {
    const s = Math.max(0, Math.ceil(ms / 1000));
    if (s < 120) return `${s}s`;
    if (s < 2 * 3600) return `${Math.round(s / 60)} min`;
    return `${Math.round(s / 3600)} h`;
}

/** A GitHub API failure as an Error that says what to do. */
export function explainGithubError(err: unknown, what: string, r: RepoRef, now: () => number = Date.now): HttpStatusError {
    const e = err as OctokitFailure;
    const detail = e.response?.data?.message ?? e.message ?? String(err);
    const repo = `${r.owner}/${r.repo}`;
    let message: string;
    switch (e.status) {
        case 401:
            message = `${what}: GitHub rejected the token (401 ${detail}): set factory:githubToken (pulumi config set --secret) or GITHUB_TOKEN to a valid token`;
            break;
        case 403:
        case 429: {
            const limited = rateLimitMessage(e, what, now);
            message = limited ?? (e.status === 429
                ? `${what}: too many requests (429 ${detail}): wait a minute and run again`
                : `${what}: forbidden (403 ${detail}): the token needs contents: write on ${repo} (classic tokens: the repo scope)`);
            break;
        }
        case 404:
            message = `${what}: ${repo} not found (404): check factory:release.owner/repo, and that the token can see the repository`;
            break;
        case 422: {
            const errors = (e.response?.data?.errors ?? []).map((x) => `${x.resource ?? ""}.${x.field ?? ""} ${x.code ?? x.message ?? ""}`.trim()).join(", ");
            message = `${what}: GitHub refused the request (422 ${detail}${errors ? `: ${errors}` : ""})`;
            break;
        }
        default:
            message = `${what} failed${e.status ? ` (HTTP ${e.status})` : ""}: ${detail}`;
    }
    return new HttpStatusError(message, e.status);
}

async function call<T>(what: string, r: RepoRef, fn: () => Promise<{ data: T }>): Promise<T> {
    try {
        return (await fn()).data;
    } catch (err) {
        throw explainGithubError(err, what, r);
    }
}

/**
 * The release for a tag: the published one (by tag), else the oldest draft with that tag_name. GitHub accepts any
 * number of drafts per tag (a draft has no tag until published; ncipollo/release-action#7), so every writer settles on the same one: the lowest id.
 */
export async function findRelease(gh: GithubClient, r: RepoRef, tag: string): Promise<Release | undefined> {
    try {
        return (await gh.rest.repos.getReleaseByTag({ ...r, tag })).data as Release;
    } catch (err) {
        if (statusOf(err) !== 404) throw explainGithubError(err, `looking up release ${tag}`, r);
    }
    return (await releasesForTag(gh, r, tag))[0];
}

/** Every release with this tag_name, the one writers settle on first (published, then the oldest draft). */
export async function releasesForTag(gh: GithubClient, r: RepoRef, tag: string): Promise<Release[]> {
    const all = await call<Release[]>(`listing releases of ${r.owner}/${r.repo}`, r, async () => ({
        data: (await gh.paginate(gh.rest.repos.listReleases, { ...r, per_page: 100 })) as Release[],
    }));
    return all.filter((x) => x.tag_name === tag).sort((a, b) => Number(a.draft) - Number(b.draft) || a.id - b.id);
}

/**
 * Finds the release for a tag or creates it as a draft. Two writers that create at the same moment both succeed on
 * GitHub (duplicate drafts); each then looks again, and the one whose draft is not the oldest deletes its own
 * (still empty) draft and uses the oldest, so assets are never split between drafts.
 */
export async function ensureRelease(gh: GithubClient, r: RepoRef, tag: string, init: { name: string; body: string; targetCommitish?: string }): Promise<{ release: Release; created: boolean }> {
    const found = await findRelease(gh, r, tag);
    if (found) return { release: found, created: false };
    let mine: Release;
    try {
        mine = (await gh.rest.repos.createRelease({ ...r, tag_name: tag, name: init.name, body: init.body, draft: true,
            ...(init.targetCommitish ? { target_commitish: init.targetCommitish } : {}) })).data as Release;
    } catch (err) {
        // Another publisher published it between our lookup and our create.
        if (statusOf(err) === 422) {
            const again = await findRelease(gh, r, tag);
            if (again) return { release: again, created: false };
        }
        throw explainGithubError(err, `creating release ${tag}`, r);
    }
    const settled = await findRelease(gh, r, tag);
    if (settled && settled.id !== mine.id) {
        gh.logLine(`release ${tag}: another writer's draft ${settled.id} is older than ours (${mine.id}); using it and deleting ours`);
        await deleteRelease(gh, r, mine.id);
        return { release: settled, created: false };
    }
    return { release: mine, created: true };
}

export async function deleteRelease(gh: GithubClient, r: RepoRef, releaseId: number): Promise<void> {
    await call(`deleting release ${releaseId}`, r, () => gh.rest.repos.deleteRelease({ ...r, release_id: releaseId }));
}

export async function listAssets(gh: GithubClient, r: RepoRef, releaseId: number): Promise<Asset[]> {
    return call<Asset[]>(`listing assets of release ${releaseId}`, r, async () => ({
        data: (await gh.paginate(gh.rest.repos.listReleaseAssets, { ...r, release_id: releaseId, per_page: 100 })) as Asset[],
    }));
}

export async function getAsset(gh: GithubClient, r: RepoRef, assetId: number): Promise<Asset | undefined> {
    try {
        return (await gh.rest.repos.getReleaseAsset({ ...r, asset_id: assetId })).data as Asset;
    } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw explainGithubError(err, `reading asset ${assetId}`, r);
    }
}

export async function deleteAsset(gh: GithubClient, r: RepoRef, assetId: number): Promise<void> {
    await call(`deleting asset ${assetId}`, r, () => gh.rest.repos.deleteReleaseAsset({ ...r, asset_id: assetId }));
}

/** True when GitHub already holds this exact file: its digest (and size) match. */
export function assetMatches(a: Asset | undefined, sha256: string, size: number): boolean {
    return !!a && a.state === "uploaded" && a.size === size && a.digest === `sha256:${sha256}`;
}

/**
 * Uploads a file as a release asset, streaming from disk with an explicit Content-Length (no whole-file buffer),
 * retrying 5xx and network failures with a fresh stream each time. An asset of the same name with other bytes is
 * replaced without a gap a consumer could fall into: the new file goes up as `<name>.partial`, then the old asset
 * is deleted and the new one renamed ("Update a release asset" changes the name).
 */
export async function uploadAsset(gh: GithubClient, r: RepoRef, release: Release, file: string, name: string, sha256: string, contentType: string): Promise<Asset> {
    const size = fs.statSync(file).size;
    if (size > MAX_ASSET_BYTES) {
        throw new Error(`${name} is ${size} bytes; GitHub release assets must be smaller than 2 GiB: publish it through OCI ` +
            "(factory:oci, with factory:release.manifestSource: oci) or make the image smaller");
    }
    const assets = await listAssets(gh, r, release.id);
    const existing = assets.find((a) => a.name === name);
    if (assetMatches(existing, sha256, size)) return existing as Asset;
    // A stale or `starter` asset holds the name but nobody can download it: clear it and upload under the name.
    if (existing && existing.state !== "uploaded") await deleteAsset(gh, r, existing.id);
    const replacing = existing?.state === "uploaded";
    const uploadName = replacing ? `${name}.partial` : name;
    const leftover = assets.find((a) => a.name === uploadName && a !== existing);
    if (leftover) await deleteAsset(gh, r, leftover.id); // an interrupted replacement's half
    const uploaded = await uploadOnce(gh, r, release, file, uploadName, sha256, size, contentType);
    if (!replacing || !existing) return uploaded;
    await deleteAsset(gh, r, existing.id);
    return call<Asset>(`renaming ${uploadName} to ${name}`, r, () =>
        gh.rest.repos.updateReleaseAsset({ ...r, asset_id: uploaded.id, name }) as Promise<{ data: Asset }>);
}

async function uploadOnce(gh: GithubClient, r: RepoRef, release: Release, file: string, name: string, sha256: string, size: number, contentType: string): Promise<Asset> {
    const attempts = 4;
    for (let attempt = 1; ; attempt++) {
        try {
            const res = await gh.request({
                method: "POST",
                url: release.upload_url,
                name,
                headers: { "content-type": contentType, "content-length": size },
                data: fs.createReadStream(file, { highWaterMark: 1 << 20 }),
                request: { retries: 0 }, // a consumed stream cannot be resent: this loop retries with a new one
            });
            const asset = res.data as Asset;
            if (asset.digest && asset.digest !== `sha256:${sha256}`) {
                await deleteAsset(gh, r, asset.id);
                // Not retried here: damaged bytes in transit (or a file that changed under us) need a look, not a loop.
                throw Object.assign(new Error(`GitHub computed ${asset.digest} for ${name}, but its sha256 is ${sha256}: the upload was corrupted; it was deleted, run again`),
                    { digestMismatch: true });
            }
            return asset;
        } catch (err) {
            if ((err as { digestMismatch?: boolean }).digestMismatch) throw err;
            const status = statusOf(err);
            if (status === 422) {
                // A half-finished upload from an interrupted run (or another publisher) holds the name: clear it once.
                const stale = (await listAssets(gh, r, release.id)).find((a) => a.name === name);
                if (assetMatches(stale, sha256, size)) return stale as Asset;
                if (stale && attempt < attempts) {
                    await deleteAsset(gh, r, stale.id);
                    continue;
                }
            }
            const retriable = status === undefined || status >= 500 || status === 429;
            if (!retriable || attempt >= attempts) throw explainGithubError(err, `uploading ${name}`, r);
            const wait = backoffMs(gh.retryDelayMs, attempt);
            gh.logLine(`uploading ${name}: ${status ? `HTTP ${status}` : (err as Error).message}; retry ${attempt}/${attempts - 1} in ${wait} ms`);
            await sleep(wait);
        }
    }
}

export async function publishRelease(gh: GithubClient, r: RepoRef, release: Release, fields: { name?: string; body?: string } = {}): Promise<Release> {
    return call<Release>(`publishing release ${release.tag_name}`, r, () =>
        gh.rest.repos.updateRelease({ ...r, release_id: release.id, draft: false, ...fields }) as Promise<{ data: Release }>);
}

export async function updateRelease(gh: GithubClient, r: RepoRef, release: Release, fields: { name?: string; body?: string }): Promise<Release> {
    return call<Release>(`updating release ${release.tag_name}`, r, () =>
        gh.rest.repos.updateRelease({ ...r, release_id: release.id, ...fields }) as Promise<{ data: Release }>);
}
