// Downloads that survive interruptions: bytes stream to <dest>.partial while they are hashed, an interrupted
// transfer resumes with an HTTP Range request (validated with If-Range), a server that ignores Range or a partial
// that turns out corrupt restarts cleanly, and only a file whose size and sha256 match is renamed into place.
// node:http, not the platform's fetch: fetch follows redirects by itself, but over loopback it took 40 % more CPU and
// 14 % more time for the same 256 MiB (undici's web streams; a Node stream over them, or their reader, alike), and
// base images are the largest transfers we make. The redirect handling below is the few lines fetch would save.
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as path from "node:path";
import { ensureFreeSpace, freeBytes, FREE_SPACE_ADVICE } from "../atomic";
import { HASH_CHUNK, type Digest } from "../sha256";
import { threadHash, type ThreadHash } from "../threadHash";
import { backoffMs, sleep } from "../backoff";

/** Bytes a download may hold while the disk catches up (see the response loop). */
const WRITE_AHEAD = 8 * HASH_CHUNK;

export interface DownloadOptions {
    url: string;
    dest: string;
    expectedSha256?: string;
    expectedSize?: number;
    /** Called with bytes done and total (when known), at most every `progressEveryMs`. */
    onProgress?: (done: number, total: number | undefined) => void;
    progressEveryMs?: number;
    /** Attempts after the first one, each resuming where the last stopped. */
    retries?: number;
    retryDelayMs?: number;
    timeoutMs?: number;
    headers?: Record<string, string>;
    log?: (line: string) => void;
}

export interface DownloadResult extends Digest {
    /** Bytes received over the network, all attempts together. */
    bytesFetched: number;
    attempts: number;
    resumed: boolean;
}

export function downloadError(kind: "http" | "network" | "checksum" | "size", message: string, extra: Record<string, unknown> = {}): Error {
    return Object.assign(new Error(message), { name: "DownloadError", kind, ...extra });
}

interface Meta {
    url: string;
    etag?: string;
    lastModified?: string;
    total?: number;
}

/** A response whose connection the idle timeout ended carries that error (the body then reports only "aborted"). */
type DownloadResponse = http.IncomingMessage & { idleTimeout?: Error };

function request(url: string, headers: Record<string, string>, timeoutMs: number, redirects = 5): Promise<DownloadResponse> {
    return new Promise((resolve, reject) => {
        let response: DownloadResponse | undefined;
        const mod = url.startsWith("https:") ? https : http;
        // identity: Range offsets and Content-Length must count the file's own bytes, never a compressed form.
        const req = mod.get(url, { headers: { "User-Agent": "image-factory", "Accept-Encoding": "identity", ...headers } }, (res) => {
            const status = res.statusCode ?? 0;
            if (status >= 300 && status < 400 && res.headers.location && redirects > 0) {
                res.resume();
                resolve(request(new URL(res.headers.location, url).toString(), headers, timeoutMs, redirects - 1));
                return;
            }
            response = res;
            resolve(res);
        });
        req.setTimeout(timeoutMs, () => {
            const idle = Object.assign(new Error(`no data for ${timeoutMs} ms`), { code: "ETIMEDOUT" });
            if (response) response.idleTimeout = idle;
            req.destroy(idle);
        });
        req.on("error", reject);
    });
}

function describeNetworkError(err: NodeJS.ErrnoException): string {
    switch (err.code) {
        case "ECONNREFUSED": return "connection refused (is the server up? are we offline?)";
        case "ENOTFOUND":
        case "EAI_AGAIN": return "host name does not resolve (offline, or a wrong URL)";
        case "ECONNRESET": return "connection reset by the server";
        case "ETIMEDOUT": return err.message || "timed out";
        default: return err.message;
    }
}

export async function download(opts: DownloadOptions): Promise<DownloadResult> {
    const partial = `${opts.dest}.partial`;
    const metaFile = `${partial}.json`;
    const log = opts.log ?? (() => undefined);
    const retries = opts.retries ?? 3;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    fs.mkdirSync(path.dirname(opts.dest), { recursive: true });
    let fetched = 0;
    let attempts = 0;
    let resumed = false;
    let restartedAfterCorruption = false;

    const readMeta = (): Meta | undefined => {
        try {
            const m = JSON.parse(fs.readFileSync(metaFile, "utf8")) as Meta;
            return m.url === opts.url ? m : undefined;
        } catch {
            return undefined;
        }
    };
    const reset = () => {
        fs.rmSync(partial, { force: true });
        fs.rmSync(metaFile, { force: true });
    };

    for (;;) {
        attempts++;
        const meta = readMeta();
        if (!meta) reset(); // a partial of another URL (or without validators) cannot be resumed safely
        const have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
        const headers: Record<string, string> = { ...opts.headers };
        if (have > 0) {
            headers.Range = `bytes=${have}-`;
            const validator = meta?.etag ?? meta?.lastModified;
            if (validator) headers["If-Range"] = validator;
        }
        let res: DownloadResponse;
        try {
            res = await request(opts.url, headers, timeoutMs);
        } catch (err) {
            if (attempts <= retries) {
                log(`download ${opts.url}: ${describeNetworkError(err as NodeJS.ErrnoException)}; retrying (${attempts}/${retries})`);
                await sleep(backoffMs(opts.retryDelayMs ?? 1000, attempts));
                continue;
            }
            throw downloadError("network", `download of ${opts.url} failed: ${describeNetworkError(err as NodeJS.ErrnoException)}`, { url: opts.url });
        }
        const status = res.statusCode ?? 0;
        let append = false;
        let total: number | undefined;
        if (status === 206 && have > 0) {
            const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers["content-range"] ?? ""));
            if (!m || Number(m[1]) !== have) {
                res.resume();
                log(`download ${opts.url}: the server answered the range request with bytes ${res.headers["content-range"]}; restarting`);
                reset();
                continue;
            }
            append = true;
            resumed = true;
            total = m[3] === "*" ? undefined : Number(m[3]);
        } else if (status === 416 && have > 0) {
            // Nothing left to send: the partial may already be whole. The checks below decide.
            res.resume();
            total = have;
            append = true;
        } else if (status === 200) {
            if (have > 0) log(`download ${opts.url}: the server ignored the range request; starting over`);
            const len = Number(res.headers["content-length"]);
            total = Number.isFinite(len) ? len : undefined;
        } else {
            res.resume();
            if (status >= 500 && attempts <= retries) {
                log(`download ${opts.url}: HTTP ${status}; retrying (${attempts}/${retries})`);
                await sleep(backoffMs(opts.retryDelayMs ?? 1000, attempts));
                continue;
            }
            throw downloadError("http", `download of ${opts.url} failed: HTTP ${status} ${res.statusMessage ?? ""}`.trim(), { status, url: opts.url });
        }
        if (total !== undefined) {
            // What is still to come must fit: checked before a byte is written (a partial being resumed is kept).
            try {
                ensureFreeSpace(path.dirname(partial), total - (append ? have : 0), path.basename(opts.dest));
            } catch (err) {
                res.destroy();
                throw err;
            }
        }
        if (!append) {
            fs.writeFileSync(metaFile, JSON.stringify({ url: opts.url, etag: res.headers.etag, lastModified: res.headers["last-modified"], total } satisfies Meta));
        }
        const out = await fs.promises.open(partial, append ? "a" : "w");
        // Received chunks (64 KiB) are gathered into 1 MiB batches (far fewer messages and write calls), each hashed
        // on the hash's thread and then written. Resumed: the bytes already on disk are hashed first, while the rest arrives.
        const state: { hash: ThreadHash; bytes: number } = { hash: threadHash(append ? { path: partial, bytes: have } : undefined), bytes: append ? have : 0 };
        let writeFailed: Error | undefined;
        let pending: Buffer[] = [];
        let pendingBytes = 0;
        let writing: Promise<unknown> = Promise.resolve();
        // Writes queue behind each other while the response keeps flowing; it pauses only when more than
        // WRITE_AHEAD bytes wait for the hash or the disk (memory stays bounded; network, hash and disk overlap).
        let queued = 0;
        const flush = () => {
            if (!pendingBytes) return;
            const chunks = pending; // handed to the hash as they are, then written with one writev: no copy
            const n = pendingBytes;
            pending = [];
            pendingBytes = 0;
            queued += n;
            if (queued > WRITE_AHEAD) res.pause();
            const hashed = state.hash.update(chunks); // the chunks are the worker's now: write what comes back
            hashed.catch(() => undefined); // its failure is handled where the write chain reaches it
            // A failed write (a full disk) ends the transfer: without this the paused response would wait forever.
            writing = writing.then(() => hashed).then((bytes) => out.writev(bytes)).then(() => {
                queued -= n;
                if (queued <= WRITE_AHEAD && res.isPaused()) res.resume();
            }, (err: Error) => {
                writeFailed ??= err;
                res.destroy(err);
            });
        };
        let last = 0;
        const everyMs = opts.progressEveryMs ?? 1000;
        let failed: Error | undefined;
        if (status !== 416) {
            try {
                await new Promise<void>((resolve, reject) => {
                    res.on("data", (chunk: Buffer) => {
                        state.bytes += chunk.length;
                        fetched += chunk.length;
                        pending.push(chunk);
                        pendingBytes += chunk.length;
                        if (pendingBytes >= HASH_CHUNK) flush();
                        if (opts.onProgress) {
                            const now = Date.now();
                            if (now - last >= everyMs) {
                                last = now;
                                opts.onProgress(state.bytes, total);
                            }
                        }
                    });
                    const cut = (message: string) => res.idleTimeout ?? Object.assign(new Error(message), { code: "ECONNRESET" });
                    res.on("end", () => (res.complete ? resolve() : reject(cut("connection closed before the end of the body"))));
                    res.on("aborted", () => reject(cut("connection aborted")));
                    res.on("error", (err) => reject(res.idleTimeout ?? err));
                });
            } catch (err) {
                failed = err as Error;
            }
        }
        // Whatever arrived is kept (and written) even after a failure: the next attempt resumes after it.
        flush();
        await writing;
        if (writeFailed) failed = writeFailed; // the write's own error (ENOSPC), not the destroyed response's
        await out.close();
        if (failed) {
            state.hash.close();
            if ((failed as NodeJS.ErrnoException).code === "ENOSPC") {
                const kept = fs.statSync(partial).size;
                const left = total !== undefined ? `${total - kept} bytes still to come, ` : "";
                throw downloadError("network", `no space left on the device holding ${partial} (${left}${freeBytes(partial) ?? "?"} free): ${FREE_SPACE_ADVICE}; ` +
                    `the ${kept} bytes received are kept in ${partial} and the next run resumes after them`);
            }
            if (attempts <= retries) {
                log(`download ${opts.url}: ${describeNetworkError(failed as NodeJS.ErrnoException)} after ${state.bytes} bytes; resuming (${attempts}/${retries})`);
                await sleep(backoffMs(opts.retryDelayMs ?? 1000, attempts));
                continue;
            }
            throw downloadError("network", `download of ${opts.url} failed: ${describeNetworkError(failed as NodeJS.ErrnoException)}; ${state.bytes} bytes kept in ${partial} for the next run to resume`);
        }
        opts.onProgress?.(state.bytes, total);
        const digest: Digest = { sha256: await state.hash.digest(), size: state.bytes };
        const wantSize = opts.expectedSize ?? total;
        if (wantSize !== undefined && digest.size !== wantSize) {
            if (resumed && !restartedAfterCorruption) {
                restartedAfterCorruption = true;
                log(`download ${opts.url}: resumed file has ${digest.size} bytes, expected ${wantSize}; starting over`);
                reset();
                continue;
            }
            reset();
            throw downloadError("size", `download of ${opts.url}: got ${digest.size} bytes, expected ${wantSize}; the file was removed`);
        }
        if (opts.expectedSha256 && digest.sha256 !== opts.expectedSha256) {
            if (resumed && !restartedAfterCorruption) {
                restartedAfterCorruption = true;
                log(`download ${opts.url}: the resumed file does not match its checksum (a corrupt partial?); starting over`);
                reset();
                continue;
            }
            reset();
            throw downloadError("checksum", `checksum mismatch for ${opts.url}: expected sha256 ${opts.expectedSha256}, got ${digest.sha256}; the file was removed`,
                { expected: opts.expectedSha256, actual: digest.sha256 });
        }
        const fd = fs.openSync(partial, "r");
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        fs.renameSync(partial, opts.dest);
        fs.rmSync(metaFile, { force: true });
        return { ...digest, bytesFetched: fetched, attempts, resumed };
    }
}
