// The consumer side (what Toolsmith does with tools.json): take an oci:// reference or an https URL plus the
// expected sha256, pull into a temp dir, find the .qcow2, verify it, and move it into the cache layout
// <cache>/<image>/<sha256>/<file>.qcow2 atomically. A file that does not match is refused and removed.
import * as fs from "node:fs";
import * as path from "node:path";
import { download } from "../baseImages/download";
import { parseOciRef, pull } from "./oci";
import { hashFile, SHA256_HEX } from "../sha256";

export interface FetchOptions {
    ref: string;
    sha256: string;
    image: string;
    cacheDir: string;
    /** Registry credentials (GHCR_USERNAME or GITHUB_ACTOR, GHCR_TOKEN). */
    username?: string;
    password?: string;
    plainHttp?: boolean;
    log?: (line: string) => void;
}

export function findQcow2(dir: string): string[] {
    const out: string[] = [];
    const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) walk(p);
            else if (e.isFile() && e.name.endsWith(".qcow2")) out.push(p);
        }
    };
    walk(dir);
    return out.sort();
}

export async function fetchArtifact(o: FetchOptions): Promise<{ path: string; cached: boolean }> {
    if (!SHA256_HEX.test(o.sha256)) throw new Error(`expected sha256 must be 64 hex digits, got ${JSON.stringify(o.sha256)}`);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(o.image)) throw new Error(`bad image name ${JSON.stringify(o.image)}`);
    const log = o.log ?? (() => undefined);
    const finalDir = path.join(o.cacheDir, o.image, o.sha256);
    // A cached file is used only after it verifies again: caches rot too.
    if (fs.existsSync(finalDir)) {
        for (const f of findQcow2(finalDir)) {
            if ((await hashFile(f)).sha256 === o.sha256) return { path: f, cached: true };
            log(`cache: ${f} no longer matches its sha256; fetching again`);
            fs.rmSync(f, { force: true });
        }
    }
    fs.mkdirSync(o.cacheDir, { recursive: true });
    const tmp = fs.mkdtempSync(path.join(o.cacheDir, ".fetch-"));
    try {
        let file: string;
        if (o.ref.startsWith("oci://")) {
            const r = parseOciRef(o.ref);
            await pull({ registry: r.registry, repository: r.repository, plainHttp: o.plainHttp, username: o.username, password: o.password }, r.reference, tmp);
            const found = findQcow2(tmp);
            if (found.length === 0) {
                throw new Error(`No .qcow2 payload found in ${o.ref}: the artifact must carry the QCOW2 as a layer with a .qcow2 file name (title annotation)`);
            }
            if (found.length > 1) throw new Error(`${o.ref} holds ${found.length} .qcow2 files (${found.map((f) => path.basename(f)).join(", ")}); expected one`);
            file = found[0];
        } else if (/^https?:\/\//.test(o.ref)) {
            const name = path.basename(new URL(o.ref).pathname);
            if (!name.endsWith(".qcow2")) throw new Error(`No .qcow2 payload found at ${o.ref}: the URL must name a .qcow2 file`);
            file = path.join(tmp, name);
            await download({ url: o.ref, dest: file, log });
        } else {
            throw new Error(`unsupported reference ${o.ref}: use oci://<registry>/<repository>:<tag> or an http(s) URL`);
        }
        const got = await hashFile(file);
        if (got.sha256 !== o.sha256) {
            throw new Error(`refusing ${o.ref}: its .qcow2 has sha256 ${got.sha256}, expected ${o.sha256} (qcow2_sha256); nothing was cached`);
        }
        fs.mkdirSync(finalDir, { recursive: true });
        const dest = path.join(finalDir, path.basename(file));
        fs.renameSync(file, dest);
        return { path: dest, cached: false };
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}
