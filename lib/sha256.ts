// SHA-256: artifacts always streaming (an image is read once, in chunks, never held in memory); small values
// (recipes, canonical JSON of build inputs) in one call.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";

/** Large reads keep syscalls per GiB low; 1 MiB measured fastest here (see bench/hash.ts). */
export const HASH_CHUNK = 1 << 20;

export interface Digest {
    sha256: string;
    size: number;
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Hashes a file by reading it once. Two buffers take turns: the next chunk is read (in libuv's thread pool) while
 * this one is hashed, so reading and hashing overlap; a stream pipeline cost 1.4x `openssl dgst -sha256`, this
 * matches it (bench/hash.ts).
 */
export async function hashFile(path: string, onBytes?: (done: number) => void): Promise<Digest> {
    const fh = await fs.promises.open(path, "r");
    try {
        const hash = crypto.createHash("sha256");
        const buffers = [Buffer.allocUnsafe(HASH_CHUNK), Buffer.allocUnsafe(HASH_CHUNK)];
        let size = 0;
        let turn = 0;
        let next = fh.read(buffers[0], 0, HASH_CHUNK, 0);
        for (;;) {
            const { bytesRead } = await next;
            if (bytesRead === 0) break;
            const chunk = buffers[turn];
            turn ^= 1;
            next = fh.read(buffers[turn], 0, HASH_CHUNK, size + bytesRead);
            hash.update(chunk.subarray(0, bytesRead));
            size += bytesRead;
            onBytes?.(size);
        }
        return { sha256: hash.digest("hex"), size };
    } finally {
        await fh.close();
    }
}

export interface HashingStream {
    /** Pass-through stream: pipe the bytes through it on their way somewhere else. */
    stream: Transform;
    /** Valid once the stream has ended. */
    digest(): Digest;
}

/**
 * A pass-through stream that hashes and counts what flows through it, so one read of the bytes both copies
 * (or uploads, or downloads) them and yields their digest. A factory rather than a Transform subclass: dynamic
 * providers serialize their code, and a subclass of a Node.js built-in class cannot be serialized.
 */
export function hashingStream(onBytes?: (done: number) => void, initial?: { hash: crypto.Hash; bytes: number }): HashingStream {
    const hash = initial?.hash ?? crypto.createHash("sha256");
    let bytes = initial?.bytes ?? 0;
    let result: Digest | undefined;
    const stream = new Transform({
        highWaterMark: HASH_CHUNK,
        transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
            hash.update(chunk);
            bytes += chunk.length;
            onBytes?.(bytes);
            cb(null, chunk);
        },
    });
    return {
        stream,
        digest() {
            result ??= { sha256: hash.digest("hex"), size: bytes };
            return result;
        },
    };
}

/** Copies src to dst (through dst.partial, then rename) and returns the digest of the bytes written. */
export async function copyFileHashed(src: string, dst: string): Promise<Digest> {
    const partial = `${dst}.partial`;
    const hasher = hashingStream();
    try {
        await pipeline(fs.createReadStream(src, { highWaterMark: HASH_CHUNK }), hasher.stream, fs.createWriteStream(partial));
        await fsyncPath(partial);
        await fs.promises.rename(partial, dst);
    } catch (err) {
        await fs.promises.rm(partial, { force: true });
        throw err;
    }
    return hasher.digest();
}

export async function fsyncPath(path: string): Promise<void> {
    const fh = await fs.promises.open(path, "r");
    try {
        await fh.sync();
    } finally {
        await fh.close();
    }
}

/** One line of `sha256sum` output, which `sha256sum -c` accepts: "<hex>  <name>\n". */
export function sha256sumLine(sha256: string, fileName: string): string {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256 hex digest: ${sha256}`);
    return `${sha256}  ${fileName}\n`;
}

/** Parses `sha256sum` output (text or binary mode) into name -> digest. */
export function parseSha256sums(text: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const line of text.split("\n")) {
        if (!line.trim()) continue;
        const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line);
        if (!m) throw new Error(`malformed sha256sum line: ${JSON.stringify(line)}`);
        out.set(m[2], m[1].toLowerCase());
    }
    return out;
}

/** JSON with object keys sorted at every level, so equal values always serialize to equal text. */
export function canonicalJson(value: unknown): string {
    return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(sortKeys);
    if (value && typeof value === "object") {
        return Object.fromEntries(Object.keys(value as object).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
    }
    return value;
}

/** sha256 of a small in-memory value (a file's bytes stream through hashFile instead). */
export function sha256Hex(data: string | Uint8Array): string {
    return crypto.createHash("sha256").update(data).digest("hex");
}
