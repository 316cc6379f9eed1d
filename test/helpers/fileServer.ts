// A loopback HTTP file server for download tests that can misbehave on purpose: drop the connection after N
// bytes, ignore Range requests, or answer with an error status. It counts requests and body bytes sent.
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";

export interface Behaviour {
    /** Close the connection after this many body bytes, for the next `times` requests. */
    dropAfter?: { bytes: number; times: number };
    ignoreRange?: boolean;
    status?: number;
    /** Send the body chunked, without content-length (the size is not known until the end). */
    noLength?: boolean;
    /** Answer 302 with this Location (a mirror that sends its files elsewhere). */
    redirectTo?: string;
    /** Send this many body bytes, then nothing more while the connection stays open (a stalled mirror). */
    stallAfter?: number;
}

export interface FileServer {
    url: string;
    bytesSent(): number;
    requests: Array<{ path: string; range?: string; status: number; acceptEncoding?: string }>;
    behave(file: string, b: Behaviour): void;
    stop(): Promise<void>;
}

export async function startFileServer(dir: string): Promise<FileServer> {
    const behaviours = new Map<string, Behaviour>();
    const requests: FileServer["requests"] = [];
    let sent = 0;
    const server = http.createServer((req, res): void => {
        const name = decodeURIComponent((req.url ?? "/").split("?")[0].slice(1));
        const file = path.join(dir, path.basename(name));
        const b = behaviours.get(path.basename(name)) ?? {};
        const range = req.headers.range;
        if (b.redirectTo) {
            requests.push({ path: name, range, status: 302 });
            res.writeHead(302, { location: b.redirectTo });
            res.end();
            return;
        }
        if (b.status) {
            requests.push({ path: name, range, status: b.status });
            res.writeHead(b.status, { "content-type": "text/plain" });
            res.end(`status ${b.status}\n`);
            return;
        }
        if (!fs.existsSync(file)) {
            requests.push({ path: name, range, status: 404 });
            res.writeHead(404);
            res.end("not found\n");
            return;
        }
        const size = fs.statSync(file).size;
        let start = 0;
        let status = 200;
        const headers: http.OutgoingHttpHeaders = { "content-type": "application/octet-stream", etag: `"v1-${size}"`, "accept-ranges": b.ignoreRange ? "none" : "bytes" };
        const m = /^bytes=(\d+)-$/.exec(range ?? "");
        if (m && !b.ignoreRange) {
            start = Number(m[1]);
            if (start >= size) {
                requests.push({ path: name, range, status: 416 });
                res.writeHead(416, { "content-range": `bytes */${size}` });
                res.end();
                return;
            }
            status = 206;
            headers["content-range"] = `bytes ${start}-${size - 1}/${size}`;
        }
        if (!b.noLength) headers["content-length"] = size - start;
        requests.push({ path: name, range, status, acceptEncoding: req.headers["accept-encoding"] });
        res.writeHead(status, headers);
        const drop = b.dropAfter && b.dropAfter.times > 0 ? b.dropAfter : undefined;
        if (drop) drop.times--;
        let out = 0;
        if (b.stallAfter !== undefined) {
            const part = fs.readFileSync(file).subarray(start, start + b.stallAfter);
            sent += part.length;
            res.write(part); // and never end: the client's idle timeout has to notice
            return;
        }
        const stream = fs.createReadStream(file, { start, highWaterMark: 64 * 1024 });
        stream.on("data", (data: string | Buffer) => {
            const chunk = Buffer.from(data);
            if (drop && out + chunk.length >= drop.bytes) {
                const part = chunk.subarray(0, Math.max(0, drop.bytes - out));
                out += part.length;
                sent += part.length;
                res.write(part, () => res.socket?.destroy());
                stream.destroy();
                return;
            }
            out += chunk.length;
            sent += chunk.length;
            if (!res.write(chunk)) {
                stream.pause();
                res.once("drain", () => stream.resume());
            }
        });
        stream.on("end", () => res.end());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return {
        url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
        bytesSent: () => sent,
        requests,
        behave: (file, b) => void behaviours.set(file, b),
        stop: () => new Promise<void>((resolve) => {
            server.closeAllConnections();
            server.close(() => resolve());
        }),
    };
}
