// The builder node's artifact service (FR-9/FR-10): the store directory over HTTP with stable URLs, byte ranges
// (resumable downloads, Proxmox, Packer), exact Content-Length, and the artifact's sha256 as its ETag.
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { parseSha256sums } from "../sha256";

const TYPES: Record<string, string> = {
    ".qcow2": "application/octet-stream",
    ".img": "application/octet-stream",
    ".raw": "application/octet-stream",
    ".iso": "application/x-iso9660-image",
    ".sha256": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".asc": "text/plain; charset=utf-8",
};

export interface ByteRange {
    start: number;
    end: number; // inclusive
}

/**
 * Parses a Range header against a file size. Returns undefined to serve the whole file (no header, another unit,
 * or several ranges, which RFC 9110 lets a server ignore), or "unsatisfiable".
 */
export function parseRange(header: string | undefined, size: number): ByteRange | "unsatisfiable" | undefined {
    if (!header) return undefined;
    const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
    if (!m) return undefined;
    const [, a, b] = m;
    if (a === "" && b === "") return undefined;
    let start: number;
    let end: number;
    if (a === "") {
        const suffix = Number(b);
        if (suffix === 0) return "unsatisfiable";
        start = Math.max(0, size - suffix);
        end = size - 1;
    } else {
        start = Number(a);
        end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
        if (b !== "" && Number(b) < start) return undefined; // invalid: ignore the header
    }
    if (start >= size || size === 0) return "unsatisfiable";
    return { start, end };
}

/** The digest recorded next to a file (<file>.sha256 in sha256sum format), if any. */
function recordedSha256(file: string): string | undefined {
    try {
        return parseSha256sums(fs.readFileSync(`${file}.sha256`, "utf8")).get(path.basename(file));
    } catch {
        return undefined;
    }
}

export interface ArtifactServerOptions {
    root: string;
    log?: (line: string) => void;
}

export function createArtifactServer(opts: ArtifactServerOptions): http.Server {
    const root = fs.realpathSync(opts.root);
    const log = opts.log ?? (() => undefined);

    return http.createServer((req, res) => {
        const started = Date.now();
        const finish = (status: number, bytes = 0) => log(`${new Date().toISOString()} ${req.method} ${req.url} ${status} ${bytes} ${Date.now() - started}ms`);
        const plain = (status: number, text: string, headers: http.OutgoingHttpHeaders = {}) => {
            res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(text), ...headers });
            res.end(req.method === "HEAD" ? undefined : text);
            finish(status);
        };

        if (req.method !== "GET" && req.method !== "HEAD") return plain(405, "method not allowed\n", { Allow: "GET, HEAD" });
        let urlPath: string;
        try {
            urlPath = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname);
        } catch {
            return plain(400, "bad request path\n");
        }
        if (urlPath === "/healthz") return plain(200, "ok\n");
        if (urlPath.includes("\0") || urlPath.split("/").includes("..")) return plain(400, "bad request path\n");
        const target = path.join(root, urlPath);
        let real: string;
        try {
            real = fs.realpathSync(target);
        } catch {
            return plain(404, "not found\n");
        }
        if (real !== root && !real.startsWith(`${root}${path.sep}`)) return plain(404, "not found\n");
        // Half-written files are never served: consumers only ever see complete artifacts.
        if (real.endsWith(".partial")) return plain(404, "not found\n");
        const st = fs.statSync(real);
        if (st.isDirectory()) {
            const entries = fs.readdirSync(real, { withFileTypes: true })
                .filter((e) => !e.name.endsWith(".partial") && !e.name.startsWith("."))
                .map((e) => (e.isDirectory() ? `${e.name}/` : e.name)).sort();
            return plain(200, entries.map((e) => `${e}\n`).join(""));
        }
        if (!st.isFile()) return plain(404, "not found\n");

        const sha = recordedSha256(real);
        const etag = sha ? `"sha256:${sha}"` : `W/"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
        const headers: http.OutgoingHttpHeaders = {
            "Content-Type": TYPES[path.extname(real)] ?? "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Last-Modified": st.mtime.toUTCString(),
            ETag: etag,
            "Cache-Control": "no-cache",
        };
        if (sha) headers["Repr-Digest"] = `sha-256=:${Buffer.from(sha, "hex").toString("base64")}:`;
        if (req.headers["if-none-match"] === etag) {
            res.writeHead(304, headers);
            res.end();
            return finish(304);
        }
        const ifRange = req.headers["if-range"];
        const range = ifRange && ifRange !== etag ? undefined : parseRange(req.headers.range, st.size);
        if (range === "unsatisfiable") return plain(416, "range not satisfiable\n", { "Content-Range": `bytes */${st.size}` });
        const start = range?.start ?? 0;
        const end = range?.end ?? st.size - 1;
        const length = st.size === 0 ? 0 : end - start + 1;
        res.writeHead(range ? 206 : 200, {
            ...headers,
            "Content-Length": length,
            ...(range ? { "Content-Range": `bytes ${start}-${end}/${st.size}` } : {}),
        });
        if (req.method === "HEAD" || length === 0) {
            res.end();
            return finish(range ? 206 : 200);
        }
        const stream = fs.createReadStream(real, { start, end, highWaterMark: 1 << 20 });
        stream.on("error", () => res.destroy());
        stream.pipe(res);
        res.on("close", () => {
            stream.destroy();
            finish(range ? 206 : 200, length);
        });
    });
}
