// A loopback TCP proxy of ours for fault tests: it forwards to a target and, for the first `cuts` connections that
// carry more than `afterBytes` from client to server, drops both sides at that point (a connection cut mid-upload),
// or answers `status` once instead of forwarding. Counts what it forwarded and what it cut. `throttle` (bytes per
// second, each direction, 0 = off; settable while running) makes a transfer slow enough to interrupt mid-way.
import * as net from "node:net";

export interface CutProxy {
    /** host:port to give the client instead of the target. */
    address: string;
    port: number;
    /** Connections cut so far. */
    cut: number;
    /** Bytes forwarded client → server and server → client. */
    up: number;
    down: number;
    /** Bytes per second per connection and direction; 0 forwards at full speed. Takes effect on the next chunk. */
    throttle: number;
    close(): Promise<void>;
}

export async function startCutProxy(target: { host: string; port: number }, o: { afterBytes?: number; cuts?: number; status?: number; statusTimes?: number; throttle?: number } = {}): Promise<CutProxy> {
    let cutsLeft = o.cuts ?? 0;
    let statusLeft = o.status ? o.statusTimes ?? 1 : 0;
    const sockets = new Set<net.Socket>();
    const state = { cut: 0, up: 0, down: 0, throttle: o.throttle ?? 0 };
    /** Forwards a chunk, then holds the source back for as long as the chunk takes at the throttled rate. */
    const forward = (from: net.Socket, to: net.Socket, chunk: Buffer) => {
        to.write(chunk);
        if (state.throttle > 0) {
            from.pause();
            setTimeout(() => from.resume(), Math.ceil((chunk.length / state.throttle) * 1000));
        }
    };
    const server = net.createServer((client) => {
        sockets.add(client);
        client.on("close", () => sockets.delete(client));
        if (statusLeft > 0) {
            statusLeft--;
            client.once("data", () => {
                client.end(`HTTP/1.1 ${o.status} Injected\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
            });
            return;
        }
        const upstream = net.connect(target.port, target.host);
        sockets.add(upstream);
        upstream.on("close", () => sockets.delete(upstream));
        let sent = 0;
        const armed = cutsLeft > 0 && o.afterBytes !== undefined;
        client.on("data", (chunk: Buffer) => {
            if (armed && cutsLeft > 0 && sent + chunk.length > (o.afterBytes as number)) {
                cutsLeft--;
                state.cut++;
                const head = chunk.subarray(0, Math.max(0, (o.afterBytes as number) - sent));
                upstream.write(head, () => {
                    client.destroy();
                    upstream.destroy();
                });
                return;
            }
            sent += chunk.length;
            state.up += chunk.length;
            forward(client, upstream, chunk);
        });
        upstream.on("data", (chunk: Buffer) => {
            state.down += chunk.length;
            forward(upstream, client, chunk);
        });
        client.on("end", () => upstream.end());
        upstream.on("end", () => client.end());
        client.on("error", () => upstream.destroy());
        upstream.on("error", () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as net.AddressInfo).port;
    return {
        address: `127.0.0.1:${port}`,
        port,
        get cut() { return state.cut; },
        get up() { return state.up; },
        get down() { return state.down; },
        get throttle() { return state.throttle; },
        set throttle(v: number) { state.throttle = v; },
        close: () => new Promise<void>((resolve) => {
            for (const s of sockets) s.destroy();
            server.close(() => resolve());
        }),
    };
}
