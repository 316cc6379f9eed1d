// The artifact store's filesystem layout (FR-10): predictable paths that map 1:1 onto stable URLs.
//   <root>/images/<name>/<version>/<name>-<version>.qcow2
//   <root>/images/<name>/<version>/<name>-<version>.qcow2.sha256   (sha256sum format)
//   <root>/images/<name>/<version>/build.json
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../atomic";

export const STORE_SCHEMA_VERSION = 1;
export const STORE_MARKER = "store.json";

export interface ArtifactPaths {
    /** Directory of one image version. */
    dir: string;
    /** The artifact itself (qcow2, .img.xz or .iso). */
    file: string;
    sha256File: string;
    buildJson: string;
    /** Path relative to the store root, with forward slashes: also the URL path. */
    relFile: string;
    fileName: string;
}

const SAFE_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function artifactPaths(root: string, name: string, version: string, ext = "qcow2"): ArtifactPaths {
    for (const [what, v] of [["image name", name], ["version", version]] as const) {
        if (!SAFE_SEGMENT.test(v) || v.includes("..")) throw new Error(`unsafe ${what} for a store path: ${JSON.stringify(v)}`);
    }
    const fileName = `${name}-${version}.${ext}`;
    const rel = `images/${name}/${version}`;
    const dir = path.join(root, rel);
    return {
        dir,
        file: path.join(dir, fileName),
        sha256File: path.join(dir, `${fileName}.sha256`),
        buildJson: path.join(dir, "build.json"),
        relFile: `${rel}/${fileName}`,
        fileName,
    };
}

export function artifactUrl(baseUrl: string, relPath: string): string {
    return `${baseUrl.replace(/\/+$/, "")}/${relPath.split("/").map(encodeURIComponent).join("/")}`;
}

export interface StoreMarker {
    schemaVersion: number;
    layout: string;
}

/** Creates the store root (idempotent) and its marker file. */
export async function ensureStoreRoot(root: string): Promise<StoreMarker> {
    if (!path.isAbsolute(root)) throw new Error(`artifact store root must be an absolute path, got ${root}`);
    await fs.promises.mkdir(path.join(root, "images"), { recursive: true });
    const marker: StoreMarker = { schemaVersion: STORE_SCHEMA_VERSION, layout: "images/<name>/<version>/<name>-<version>.qcow2" };
    const markerPath = path.join(root, STORE_MARKER);
    const body = `${JSON.stringify(marker, null, 2)}\n`;
    let current: string | undefined;
    try {
        current = await fs.promises.readFile(markerPath, "utf8");
    } catch {
        current = undefined;
    }
    if (current !== body) await writeFileAtomic(markerPath, body);
    return marker;
}

/** Removes the marker and the directories left empty; never deletes artifacts someone else put there. */
export async function removeStoreRootIfEmpty(root: string): Promise<void> {
    await fs.promises.rm(path.join(root, STORE_MARKER), { force: true });
    await removeEmptyDirs(path.join(root, "images"));
    await fs.promises.rmdir(root).catch(() => undefined);
}

export async function removeEmptyDirs(dir: string): Promise<boolean> {
    let entries: fs.Dirent[];
    try {
        entries = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch {
        return true;
    }
    let empty = true;
    for (const e of entries) {
        if (e.isDirectory() && (await removeEmptyDirs(path.join(dir, e.name)))) continue;
        empty = false;
    }
    if (empty) await fs.promises.rmdir(dir).catch(() => undefined);
    return empty;
}

/**
 * The version ledger of an image: <root>/images/<name>/versions.json, version -> build key. A version is written
 * here when a build is assigned it and never removed, so a version is never given to different bytes, even after
 * the files of the old version were deleted.
 */
export function versionLedgerPath(root: string, name: string): string {
    return path.join(root, "images", name, "versions.json");
}

export function readVersionLedger(root: string, name: string): Record<string, { buildKey: string; at: string }> {
    try {
        return JSON.parse(fs.readFileSync(versionLedgerPath(root, name), "utf8")) as Record<string, { buildKey: string; at: string }>;
    } catch {
        return {};
    }
}

export async function recordVersion(root: string, name: string, version: string, buildKey: string): Promise<void> {
    const ledger = readVersionLedger(root, name);
    if (ledger[version]?.buildKey === buildKey) return;
    if (ledger[version]) throw new Error(`version ${version} of ${name} was already given to build ${ledger[version].buildKey}; versions are never reused`);
    ledger[version] = { buildKey, at: new Date().toISOString() };
    const sorted = Object.fromEntries(Object.entries(ledger).sort(([a], [b]) => (a < b ? -1 : 1)));
    await writeFileAtomic(versionLedgerPath(root, name), `${JSON.stringify(sorted, null, 2)}\n`);
}
