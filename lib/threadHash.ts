// SHA-256 on a worker thread, for transfers: the thread that reads a socket and queues disk writes does not also
// hash, so receiving, writing and hashing use the machine's cores side by side (as `curl | tee | openssl dgst` does
// with three processes). Chunks go to the worker and come back (their memory moved, not copied, when a chunk owns
// it, as a socket's do), so the next ones are hashed while these are written.
import { Worker } from "node:worker_threads";

/** The worker, as plain JavaScript: it runs without a TypeScript loader. */
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const crypto = require("node:crypto");
const fs = require("node:fs");
const hash = crypto.createHash("sha256");
if (workerData.prefix) {
    // A resumed download: the bytes already on disk first, then what arrives.
    const fd = fs.openSync(workerData.prefix.path, "r");
    const buf = Buffer.allocUnsafe(1 << 20);
    let left = workerData.prefix.bytes;
    let pos = 0;
    try {
        while (left > 0) {
            const n = fs.readSync(fd, buf, 0, Math.min(buf.length, left), pos);
            if (n === 0) throw new Error("the file was cut short while it was hashed: " + workerData.prefix.path);
            hash.update(buf.subarray(0, n));
            left -= n;
            pos += n;
        }
    } finally {
        fs.closeSync(fd);
    }
}
parentPort.on("message", (m) => {
    if (m.chunks) {
        for (const c of m.chunks) hash.update(c);
        parentPort.postMessage({ id: m.id, chunks: m.chunks }, m.chunks.map((c) => c.buffer));
    } else {
        parentPort.postMessage({ id: m.id, digest: hash.digest("hex") });
    }
});
`;

/** Whether a chunk is the whole of its memory, which can then move to the worker instead of being copied. */
function ownsMemory(c: Buffer): boolean {
    return c.byteOffset === 0 && c.byteLength === c.buffer.byteLength && c.buffer instanceof ArrayBuffer;
}

export interface ThreadHash {
    /**
     * Hashes `chunks` after everything handed over before them, and gives their bytes back once hashed. The chunks
     * themselves must not be used afterwards (their memory moves to the worker): use what the promise returns.
     */
    update(chunks: Buffer[]): Promise<Buffer[]>;
    /** The hex digest of everything handed over (the prefix first); the worker then ends. */
    digest(): Promise<string>;
    /** Ends the worker without a digest (a failed or restarted transfer). */
    close(): void;
}

/** A hash on its own thread; `prefix` is a file whose first `bytes` bytes come before any chunk (a resume). */
export function threadHash(prefix?: { path: string; bytes: number }): ThreadHash {
    const worker = new Worker(WORKER, { eval: true, workerData: { prefix } });
    worker.unref(); // never what keeps a process alive
    // Every request (a batch of chunks, or the digest) waits here for its answer, in order; a failure rejects them all.
    type Answer = { chunks?: Uint8Array[]; digest?: string };
    const waiting = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
    let next = 0;
    let failed: Error | undefined;
    const fail = (e: Error) => {
        failed ??= e;
        for (const w of waiting.values()) w.reject(failed);
        waiting.clear();
    };
    worker.on("message", (m: Answer & { id: number }) => {
        const w = waiting.get(m.id);
        waiting.delete(m.id);
        w?.resolve(m);
    });
    worker.on("error", fail);
    const ask = (message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Answer> => {
        if (failed) return Promise.reject(failed);
        const id = next++;
        const answer = new Promise<Answer>((resolve, reject) => waiting.set(id, { resolve, reject }));
        worker.postMessage({ id, ...message }, transfer);
        return answer;
    };
    return {
        async update(chunks) {
            // A view into a larger (pooled) buffer would clone all of that buffer: send a copy of the view instead.
            const data = chunks.map((c) => (ownsMemory(c) ? c : new Uint8Array(c)));
            const a = await ask({ chunks: data }, data.map((c) => c.buffer as ArrayBuffer));
            return (a.chunks ?? []).map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
        },
        async digest() {
            const a = await ask({});
            void worker.terminate();
            return a.digest as string;
        },
        close() {
            fail(new Error("the hash was closed"));
            void worker.terminate();
        },
    };
}
