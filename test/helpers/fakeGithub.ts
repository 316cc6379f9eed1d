// A loopback stand-in for the GitHub REST endpoints the release publisher uses, following GitHub's documented
// behaviour (docs.github.com/en/rest/releases/releases and /releases/assets; each behaviour cites its section):
// token auth (401 "Bad credentials"), releases by tag (published only) and by list (drafts too), 422
// "already_exists" for a published tag (on create, and on publishing a draft whose tag another published release
// holds) or a taken asset name, several drafts per tag, uploads on a separate "uploads host" path that require
// Content-Length and report the asset's sha256 `digest`, a cut upload leaving a `starter` asset, browser downloads
// of published assets through a redirect. Uploaded bytes go to disk, hashed while they arrive. Faults (e.g.
// secondary rate limits: 403/429 with Retry-After; a 5xx) can be injected per route, downloads and uploads included.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

interface FakeAsset {
    id: number;
    name: string;
    label: string | null;
    content_type: string;
    size: number;
    /** null for assets uploaded before GitHub computed digests (changelog 2025-06-03): legacyDigests() makes them. */
    digest: string | null;
    state: "uploaded" | "starter";
    file: string;
    created_at: string;
}

interface FakeRelease {
    id: number;
    tag_name: string;
    name: string;
    body: string;
    draft: boolean;
    prerelease: boolean;
    target_commitish: string;
    created_at: string;
    published_at: string | null;
    /** A draft's stand-in for its tag in URLs (`untagged-<hex>`): it has no tag until it is published. */
    untagged: string;
    assets: FakeAsset[];
}

export interface Fault {
    method: string;
    /** Regular expression on the request path. */
    path: RegExp;
    status: number;
    times: number;
    headers?: Record<string, string>;
    /** The error message GitHub would send (secondary rate limits say "You have exceeded a secondary rate limit"). */
    message?: string;
}

export interface FakeGithub {
    url: string;
    token: string;
    requests: Array<{ method: string; path: string; status: number; bytes: number }>;
    releases(owner: string, repo: string): FakeRelease[];
    addRepo(owner: string, repo: string): void;
    inject(f: Fault): void;
    /** Turns the repository's assets into ones uploaded before GitHub computed digests (`digest: null`). */
    legacyDigests(owner: string, repo: string): void;
    /** The next upload is stored with one byte flipped (bytes damaged in transit): GitHub's digest then differs. */
    corruptNextUpload(): void;
    /** The address the fake puts in the URLs it hands out (upload_url, asset URLs): e.g. a proxy in front of it. */
    setPublicUrl(url: string): void;
    /** Bytes of an uploaded asset. */
    assetBytes(owner: string, repo: string, tag: string, name: string): Buffer | undefined;
    close(): Promise<void>;
}

export async function startFakeGithub(opts: { token: string; repos: Array<[string, string]> }): Promise<FakeGithub> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-fakegh-"));
    const repos = new Map<string, FakeRelease[]>();
    for (const [o, r] of opts.repos) repos.set(`${o}/${r}`, []);
    let nextId = 1000;
    let corruptNext = false;
    const faults: Fault[] = [];
    const requests: FakeGithub["requests"] = [];
    let base = "";

    // "Get a release": a draft's html_url and its assets' browser_download_url name `untagged-<hex>`, not the tag
    // (a draft has no tag until it is published: GitHub Docs, "Managing releases in a repository"): URLs taken before publishing are dead after it.
    const urlTag = (r: FakeRelease) => (r.draft ? r.untagged : r.tag_name);
    const releaseJson = (owner: string, repo: string, r: FakeRelease) => ({
        id: r.id, tag_name: r.tag_name, name: r.name, body: r.body, draft: r.draft, prerelease: r.prerelease,
        target_commitish: r.target_commitish, created_at: r.created_at, published_at: r.published_at,
        url: `${base}/repos/${owner}/${repo}/releases/${r.id}`,
        html_url: `${base}/${owner}/${repo}/releases/tag/${urlTag(r)}`,
        assets_url: `${base}/repos/${owner}/${repo}/releases/${r.id}/assets`,
        upload_url: `${base}/uploads/repos/${owner}/${repo}/releases/${r.id}/assets{?name,label}`,
        assets: r.assets.map((a) => assetJson(owner, repo, r, a)),
    });
    const assetJson = (owner: string, repo: string, r: FakeRelease, a: FakeAsset) => ({
        id: a.id, name: a.name, label: a.label, content_type: a.content_type, size: a.size, digest: a.digest, state: a.state,
        created_at: a.created_at, url: `${base}/repos/${owner}/${repo}/releases/assets/${a.id}`,
        browser_download_url: `${base}/${owner}/${repo}/releases/download/${urlTag(r)}/${encodeURIComponent(a.name)}`,
    });

    const server = http.createServer((req, res) => {
        const url = new URL(req.url ?? "/", "http://x");
        const p = url.pathname;
        const method = req.method ?? "GET";
        let bytesIn = 0;
        const send = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
            const text = body === undefined ? "" : JSON.stringify(body);
            res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text), ...headers });
            res.end(text);
            requests.push({ method, path: p, status, bytes: bytesIn });
        };
        const notFound = () => send(404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" });
        const validation = (resource: string, field: string) => send(422, { message: "Validation Failed", errors: [{ resource, code: "already_exists", field }] });

        // Faults on any route, the browser downloads and the uploads host included (a CDN's 5xx, a rate limit).
        const fault = faults.find((f) => f.method === method && f.path.test(p) && f.times > 0);
        if (fault) {
            fault.times--;
            req.resume();
            req.on("end", () => send(fault.status, { message: fault.message ?? (fault.status >= 500 ? "Server Error" : "injected") }, fault.headers));
            return;
        }
        // Browser downloads ("Get a release asset": browser_download_url): public, published releases only, answered
        // with a 302 to the asset's storage location, as github.com does; clients must follow it.
        const dl = /^\/([^/]+)\/([^/]+)\/releases\/download\/([^/]+)\/([^/]+)$/.exec(p);
        if (dl && (method === "GET" || method === "HEAD")) {
            const r = repos.get(`${dl[1]}/${dl[2]}`)?.find((x) => x.tag_name === dl[3] && !x.draft);
            const a = r?.assets.find((x) => x.name === decodeURIComponent(dl[4]) && x.state === "uploaded");
            if (!a) return notFound();
            res.writeHead(302, { location: `${base}/_storage/assets/${a.id}/${encodeURIComponent(a.name)}`, "content-length": 0 });
            res.end();
            requests.push({ method, path: p, status: 302, bytes: 0 });
            return;
        }
        const stored = /^\/_storage\/assets\/(\d+)\/[^/]+$/.exec(p);
        if (stored && (method === "GET" || method === "HEAD")) {
            const a = [...repos.values()].flat().flatMap((r) => r.assets).find((x) => x.id === Number(stored[1]));
            if (!a) return notFound();
            res.writeHead(200, { "content-type": "application/octet-stream", "content-length": a.size });
            if (method === "HEAD") res.end();
            else fs.createReadStream(a.file).pipe(res);
            requests.push({ method, path: p, status: 200, bytes: 0 });
            return;
        }

        const auth = req.headers.authorization ?? "";
        if (auth !== `token ${opts.token}` && auth !== `Bearer ${opts.token}`) {
            req.resume();
            return send(401, { message: "Bad credentials", documentation_url: "https://docs.github.com/rest", status: "401" });
        }

        const upload = /^\/uploads\/repos\/([^/]+)\/([^/]+)\/releases\/(\d+)\/assets$/.exec(p);
        if (upload && method === "POST") {
            const list = repos.get(`${upload[1]}/${upload[2]}`);
            const r = list?.find((x) => x.id === Number(upload[3]));
            if (!r) {
                req.resume();
                return notFound();
            }
            const name = url.searchParams.get("name") ?? "";
            if (!req.headers["content-length"]) {
                req.resume();
                return send(411, { message: "Content-Length required" });
            }
            if (r.assets.some((a) => a.name === name)) {
                req.resume();
                return validation("ReleaseAsset", "name");
            }
            // Its id now: uploads run side by side, and each needs a file of its own from its first byte.
            const id = nextId++;
            const file = path.join(dir, `asset-${id}`);
            const hash = crypto.createHash("sha256");
            const out = fs.createWriteStream(file);
            const corrupt = corruptNext;
            corruptNext = false;
            req.on("data", (c: Buffer) => {
                if (corrupt && bytesIn === 0 && c.length > 0) c[0] ^= 0xff; // damaged in transit: stored and hashed as received
                hash.update(c);
                bytesIn += c.length;
            });
            const expected = Number(req.headers["content-length"]);
            // "Upload a release asset": an upload cut off before Content-Length bytes leaves an asset in state
            // `starter`, which holds the name (a new upload gets 422 already_exists) until it is deleted.
            req.on("aborted", () => {
                r.assets.push({ id, name, label: null, content_type: String(req.headers["content-type"] ?? "application/octet-stream"),
                    size: 0, digest: null, state: "starter", file, created_at: new Date().toISOString() });
                requests.push({ method, path: p, status: 0, bytes: bytesIn });
            });
            req.pipe(out);
            out.on("finish", () => {
                if (bytesIn !== expected) return;
                const a: FakeAsset = { id, name, label: url.searchParams.get("label"), content_type: String(req.headers["content-type"] ?? "application/octet-stream"),
                    size: bytesIn, digest: `sha256:${hash.digest("hex")}`, state: "uploaded", file, created_at: new Date().toISOString() };
                r.assets.push(a);
                send(201, assetJson(upload[1], upload[2], r, a));
            });
            return;
        }

        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
            bytesIn = Buffer.concat(chunks).length;
            const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> : {};
            const m = /^\/repos\/([^/]+)\/([^/]+)\/releases(?:\/(.*))?$/.exec(p);
            if (!m) return notFound();
            const [owner, repo, rest] = [m[1], m[2], m[3] ?? ""];
            const list = repos.get(`${owner}/${repo}`);
            if (!list) return notFound();
            let mm: RegExpExecArray | null;
            if (rest === "" && method === "GET") {
                const perPage = Number(url.searchParams.get("per_page") ?? 30);
                const page = Number(url.searchParams.get("page") ?? 1);
                const sorted = [...list].sort((a, b) => b.id - a.id);
                const slice = sorted.slice((page - 1) * perPage, page * perPage);
                const headers: Record<string, string> = {};
                if (page * perPage < sorted.length) headers.link = `<${base}/repos/${owner}/${repo}/releases?per_page=${perPage}&page=${page + 1}>; rel="next"`;
                return send(200, slice.map((r) => releaseJson(owner, repo, r)), headers);
            }
            if (rest === "" && method === "POST") {
                const tag = String(body.tag_name ?? "");
                if (!tag) return send(422, { message: "Validation Failed", errors: [{ resource: "Release", code: "missing_field", field: "tag_name" }] });
                const draft = body.draft === true;
                // "Create a release": a draft has no tag yet, so GitHub accepts any number of drafts with the same
                // tag_name (duplicate drafts: ncipollo/release-action#7, goreleaser/goreleaser#3148); only a second published release for a tag is refused.
                if (!draft && list.some((r) => r.tag_name === tag && !r.draft)) return validation("Release", "tag_name");
                const r: FakeRelease = { id: nextId++, tag_name: tag, name: String(body.name ?? tag), body: String(body.body ?? ""), draft, prerelease: false,
                    target_commitish: String(body.target_commitish ?? "main"), created_at: new Date().toISOString(), published_at: draft ? null : new Date().toISOString(),
                    untagged: `untagged-${crypto.randomBytes(10).toString("hex")}`, assets: [] };
                list.push(r);
                return send(201, releaseJson(owner, repo, r));
            }
            if ((mm = /^tags\/(.+)$/.exec(rest)) && method === "GET") {
                const r = list.find((x) => x.tag_name === decodeURIComponent(mm?.[1] ?? "") && !x.draft);
                return r ? send(200, releaseJson(owner, repo, r)) : notFound();
            }
            if ((mm = /^assets\/(\d+)$/.exec(rest))) {
                const id = Number(mm[1]);
                const r = list.find((x) => x.assets.some((a) => a.id === id));
                const a = r?.assets.find((x) => x.id === id);
                if (!r || !a) return notFound();
                if (method === "GET") return send(200, assetJson(owner, repo, r, a));
                // "Update a release asset": PATCH renames (and relabels); a name another asset holds is refused.
                if (method === "PATCH") {
                    if (typeof body.name === "string" && body.name !== a.name) {
                        if (r.assets.some((x) => x.name === body.name)) return validation("ReleaseAsset", "name");
                        a.name = body.name;
                    }
                    if (typeof body.label === "string") a.label = body.label;
                    return send(200, assetJson(owner, repo, r, a));
                }
                if (method === "DELETE") {
                    r.assets = r.assets.filter((x) => x.id !== id);
                    fs.rmSync(a.file, { force: true });
                    return send(204);
                }
            }
            if ((mm = /^(\d+)\/assets$/.exec(rest)) && method === "GET") {
                const r = list.find((x) => x.id === Number(mm?.[1]));
                return r ? send(200, r.assets.map((a) => assetJson(owner, repo, r, a))) : notFound();
            }
            if ((mm = /^(\d+)$/.exec(rest))) {
                const r = list.find((x) => x.id === Number(mm?.[1]));
                if (!r) return notFound();
                if (method === "GET") return send(200, releaseJson(owner, repo, r));
                if (method === "PATCH") {
                    // "Update a release" (docs.github.com/en/rest/releases/releases#update-a-release): publishing a draft
                    // gives it its tag, so a tag another published release already holds is refused as "Create a
                    // release" refuses it: 422 Validation Failed, code already_exists on tag_name.
                    if (r.draft && body.draft === false && list.some((x) => x !== r && x.tag_name === r.tag_name && !x.draft)) return validation("Release", "tag_name");
                    if (typeof body.name === "string") r.name = body.name;
                    if (typeof body.body === "string") r.body = body.body;
                    if (typeof body.draft === "boolean") {
                        if (r.draft && !body.draft) r.published_at = new Date().toISOString();
                        r.draft = body.draft;
                    }
                    return send(200, releaseJson(owner, repo, r));
                }
                if (method === "DELETE") {
                    list.splice(list.indexOf(r), 1);
                    return send(204);
                }
            }
            return notFound();
        });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    return {
        url: base,
        token: opts.token,
        requests,
        releases: (o, r) => repos.get(`${o}/${r}`) ?? [],
        addRepo: (o, r) => void repos.set(`${o}/${r}`, repos.get(`${o}/${r}`) ?? []),
        inject: (f) => void faults.push(f),
        corruptNextUpload: () => void (corruptNext = true),
        setPublicUrl: (url) => void (base = url.replace(/\/$/, "")),
        legacyDigests: (o, r) => { for (const rel of repos.get(`${o}/${r}`) ?? []) for (const a of rel.assets) a.digest = null; },
        assetBytes: (o, r, tag, name) => {
            const a = repos.get(`${o}/${r}`)?.find((x) => x.tag_name === tag)?.assets.find((x) => x.name === name);
            return a ? fs.readFileSync(a.file) : undefined;
        },
        close: () => new Promise<void>((resolve) => server.close(() => {
            fs.rmSync(dir, { recursive: true, force: true });
            resolve();
        })),
    };
}
