// A fetch for Octokit whose request bodies stream. Node's fetch (undici, 6.x and 7.x alike) reads a streamed request
// body far ahead of the socket: uploading a 256 MiB release asset took the uploading process from 134 to 411 MiB
// (bench:upload), so a 1.9 GiB image would have needed 2 GiB of memory. A body that is a Node stream goes through
// node:http(s) here instead, piped with backpressure (peak RSS then stays flat); everything else is the platform's
// fetch. The answer is a standard Response, so Octokit reads statuses, headers and errors as it always does.
import * as http from "node:http";
import * as https from "node:https";
import { Readable } from "node:stream";

/** Statuses a Response must be made without a body for (the fetch spec's "null body status"). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

export const streamingFetch: typeof fetch = async (input, init) => {
    const body = init?.body as unknown;
    if (!(body instanceof Readable)) return fetch(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = Object.fromEntries(new Headers(init?.headers).entries());
    const mod = url.protocol === "https:" ? https : http;
    return new Promise<Response>((resolve, reject) => {
        const req = mod.request(url, { method: init?.method ?? "POST", headers, signal: init?.signal ?? undefined }, (res) => {
            const out = new Headers();
            for (const [k, v] of Object.entries(res.headers)) {
                if (v === undefined) continue;
                for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
            }
            const status = res.statusCode ?? 0;
            const payload = NULL_BODY.has(status) ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
            if (!payload) res.resume();
            resolve(new Response(payload, { status, statusText: res.statusMessage, headers: out }));
        });
        req.on("error", reject);
        body.on("error", (err) => req.destroy(err));
        body.pipe(req);
    });
};
