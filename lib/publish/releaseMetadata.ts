// Release metadata kept in the repository, deterministic and diff-friendly (sorted keys, no timestamps but the
// build's own): releases/<version>.json and .md, the package manifest of every released image version
// (releases/manifests/<image>-<version>.txt) from which docs/releases.md computes package diffs, and the
// Toolsmith manifests (manifests/tools.json and manifests/<image>.tools.json).
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileIfChanged } from "../atomic";
import { canonicalJson } from "../sha256";
import { compareDebVersions } from "../debVersion";
import { withFileLock } from "../fileLock";
import { compareVersions } from "../version";

export const RELEASE_SCHEMA_VERSION = 1;
export type ManifestSource = "asset" | "oci" | "store";

export interface ToolsJson {
    image: { name: string; tarball: string; sha256: string; qcow2: string; qcow2_sha256: string };
    tools: Record<string, unknown>;
    operations: unknown[];
}

export interface ReleaseImageRecord {
    image: string;
    version: string;
    tag: string;
    qcow2: { name: string; sha256: string; size: number; assetUrl: string | null; storeUrl: string | null };
    sha256Asset: { name: string; url: string } | null;
    releaseUrl: string | null;
    oci: { ref: string; digest: string; layerDigest: string } | null;
    base: { id: string; sha256: string };
    gitCommit: string;
    buildTime: string;
    buildKey: string;
    /** The image part of tools.json as published for this version. */
    toolsJson: ToolsJson;
}

export interface ReleaseFile {
    schemaVersion: number;
    version: string;
    images: Record<string, ReleaseImageRecord>;
}

/** The qcow2 location tools.json points at, by the configured source, falling back in a fixed order. */
export function qcow2Location(r: Omit<ReleaseImageRecord, "toolsJson">, source: ManifestSource): string {
    const bySource: Record<ManifestSource, string | null> = { asset: r.qcow2.assetUrl, oci: r.oci?.ref ?? null, store: r.qcow2.storeUrl };
    const loc = bySource[source] ?? r.qcow2.assetUrl ?? r.oci?.ref ?? r.qcow2.storeUrl;
    if (!loc) throw new Error(`${r.image} ${r.version} has no published location for tools.json (no release asset, OCI ref or store URL)`);
    return loc;
}

export function toolsJsonFor(r: Omit<ReleaseImageRecord, "toolsJson">, source: ManifestSource, existing?: ToolsJson): ToolsJson {
    return {
        image: { name: r.image, tarball: existing?.image.tarball ?? "", sha256: existing?.image.sha256 ?? "", qcow2: qcow2Location(r, source), qcow2_sha256: r.qcow2.sha256 },
        tools: existing?.tools ?? {},
        operations: existing?.operations ?? [],
    };
}

/** Pretty JSON with sorted keys: stable byte for byte, readable in a diff. */
export function stableJson(value: unknown): string {
    return `${JSON.stringify(JSON.parse(canonicalJson(value)), null, 2)}\n`;
}

export function renderReleaseMd(f: ReleaseFile): string {
    const lines = [`# Release ${f.version}`, ""];
    for (const name of Object.keys(f.images).sort()) {
        const r = f.images[name];
        lines.push(`## ${name}`, "", "| | |", "|---|---|");
        lines.push(`| file | \`${r.qcow2.name}\` (${r.qcow2.size} bytes) |`);
        lines.push(`| sha256 | \`${r.qcow2.sha256}\` |`);
        if (r.qcow2.assetUrl) lines.push(`| release asset | ${r.qcow2.assetUrl} |`);
        if (r.sha256Asset) lines.push(`| checksum file | ${r.sha256Asset.url} |`);
        if (r.releaseUrl) lines.push(`| release | ${r.releaseUrl} |`);
        if (r.oci) lines.push(`| OCI | \`${r.oci.ref}\` (manifest \`${r.oci.digest}\`) |`);
        if (r.qcow2.storeUrl) lines.push(`| artifact store | ${r.qcow2.storeUrl} |`);
        lines.push(`| base image | ${r.base.id} (\`sha256:${r.base.sha256}\`) |`);
        lines.push(`| git commit | \`${r.gitCommit}\` |`, `| built | ${r.buildTime} |`, `| build key | \`${r.buildKey}\` |`, "");
        lines.push("tools.json snippet:", "", "```json", stableJson(r.toolsJson).trimEnd(), "```", "");
    }
    return lines.join("\n");
}

export function parsePkgManifest(text: string): Map<string, string> {
    const m = new Map<string, string>();
    for (const line of text.split("\n")) {
        const [pkg, version] = line.split("\t");
        if (pkg && version) m.set(pkg, version);
    }
    return m;
}

export interface PackageDiff {
    added: Array<[string, string]>;
    removed: Array<[string, string]>;
    upgraded: Array<[string, string, string]>;
    downgraded: Array<[string, string, string]>;
}

export function diffPackages(prev: Map<string, string>, cur: Map<string, string>): PackageDiff {
    const d: PackageDiff = { added: [], removed: [], upgraded: [], downgraded: [] };
    for (const [pkg, v] of [...cur].sort()) {
        const old = prev.get(pkg);
        if (old === undefined) d.added.push([pkg, v]);
        else {
            const c = compareDebVersions(v, old);
            if (c > 0) d.upgraded.push([pkg, old, v]);
            else if (c < 0) d.downgraded.push([pkg, old, v]);
        }
    }
    for (const [pkg, v] of [...prev].sort()) if (!cur.has(pkg)) d.removed.push([pkg, v]);
    return d;
}

export function renderPackageDiff(d: PackageDiff): string[] {
    const out: string[] = [];
    const list = (title: string, items: string[]) => {
        if (items.length) out.push(`- ${title} (${items.length}): ${items.join(", ")}`);
    };
    list("added", d.added.map(([p, v]) => `${p} ${v}`));
    list("removed", d.removed.map(([p, v]) => `${p} ${v}`));
    list("upgraded", d.upgraded.map(([p, a, b]) => `${p} ${a} → ${b}`));
    list("downgraded", d.downgraded.map(([p, a, b]) => `${p} ${a} → ${b}`));
    if (!out.length) out.push("- packages: no change");
    return out;
}

export function manifestFile(dir: string, image: string, version: string): string {
    return path.join(dir, "releases", "manifests", `${image}-${version}.txt`);
}

/** docs/releases.md, regenerated from every releases/*.json: newest first, one entry per image version. */
export function renderChangelog(files: ReleaseFile[], manifestOf: (image: string, version: string) => string | undefined): string {
    const entries = files.flatMap((f) => Object.values(f.images));
    const byImage = new Map<string, ReleaseImageRecord[]>();
    for (const e of entries) byImage.set(e.image, [...(byImage.get(e.image) ?? []), e]);
    for (const list of byImage.values()) list.sort((a, b) => compareVersions(a.version, b.version));
    const sorted = [...entries].sort((a, b) => compareVersions(b.version, a.version) || (a.image < b.image ? -1 : 1));
    const lines = ["# Releases", "", "Generated by image-factory from `releases/*.json`; do not edit by hand.", ""];
    for (const e of sorted) {
        const history = byImage.get(e.image) ?? [];
        const prev = history[history.indexOf(e) - 1];
        lines.push(`## ${e.version} — ${e.image}`, "");
        const links = [e.releaseUrl ? `[release](${e.releaseUrl})` : null, e.qcow2.assetUrl ? `[${e.qcow2.name}](${e.qcow2.assetUrl})` : null,
            e.sha256Asset ? `[${e.sha256Asset.name}](${e.sha256Asset.url})` : null, e.oci ? `\`${e.oci.ref}\`` : null,
            `[metadata](../releases/${e.version}.md)`].filter(Boolean);
        lines.push(`- ${links.join(" · ")}`, `- sha256 \`${e.qcow2.sha256}\`, ${e.qcow2.size} bytes, commit \`${e.gitCommit.slice(0, 12)}\``);
        if (!prev) lines.push(`- base image: ${e.base.id} (\`${e.base.sha256.slice(0, 12)}\`); first release of ${e.image}`);
        else {
            lines.push(prev.base.id === e.base.id && prev.base.sha256 === e.base.sha256
                ? `- base image: unchanged since ${prev.version} (${e.base.id})`
                : `- base image: ${prev.base.id} (\`${prev.base.sha256.slice(0, 12)}\`) → ${e.base.id} (\`${e.base.sha256.slice(0, 12)}\`)`);
            const a = manifestOf(e.image, prev.version);
            const b = manifestOf(e.image, e.version);
            if (a !== undefined && b !== undefined) {
                lines.push(`- packages since ${prev.version}:`, ...renderPackageDiff(diffPackages(parsePkgManifest(a), parsePkgManifest(b))).map((l) => `  ${l}`));
            }
        }
        lines.push("");
    }
    return lines.join("\n");
}

export function readReleaseFiles(dir: string): ReleaseFile[] {
    const rel = path.join(dir, "releases");
    if (!fs.existsSync(rel)) return [];
    return fs.readdirSync(rel).filter((f) => /^v[\d.]+\.json$/.test(f)).sort()
        .map((f) => JSON.parse(fs.readFileSync(path.join(rel, f), "utf8")) as ReleaseFile);
}

/**
 * Records one image version: its entry in releases/<version>.json (other images of the same version are kept),
 * the .md rendering, its package manifest, the regenerated changelog and the tools.json manifests.
 * Returns the files that changed.
 */
export async function writeReleaseMetadata(dir: string, record: Omit<ReleaseImageRecord, "toolsJson">, pkgManifest: string,
    source: ManifestSource, opts: { primary: boolean }): Promise<string[]> {
    fs.mkdirSync(path.join(dir, "releases"), { recursive: true });
    // Several images may write the same version file and the shared changelog in one run.
    return withFileLock(path.join(dir, "releases", ".lock"), () => writeLocked(dir, record, pkgManifest, source, opts));
}

async function writeLocked(dir: string, record: Omit<ReleaseImageRecord, "toolsJson">, pkgManifest: string,
    source: ManifestSource, opts: { primary: boolean }): Promise<string[]> {
    const changed: string[] = [];
    const put = async (file: string, text: string) => {
        if (await writeFileIfChanged(file, text)) changed.push(path.relative(dir, file));
    };
    const imageTools = path.join(dir, "manifests", `${record.image}.tools.json`);
    const existingTools = fs.existsSync(imageTools) ? JSON.parse(fs.readFileSync(imageTools, "utf8")) as ToolsJson : undefined;
    const full: ReleaseImageRecord = { ...record, toolsJson: toolsJsonFor(record, source, existingTools) };
    const relFile = path.join(dir, "releases", `${record.version}.json`);
    const current = fs.existsSync(relFile) ? JSON.parse(fs.readFileSync(relFile, "utf8")) as ReleaseFile : { schemaVersion: RELEASE_SCHEMA_VERSION, version: record.version, images: {} };
    current.images[record.image] = full;
    await put(relFile, stableJson(current));
    await put(path.join(dir, "releases", `${record.version}.md`), renderReleaseMd(current));
    await put(manifestFile(dir, record.image, record.version), pkgManifest);
    await put(imageTools, stableJson(full.toolsJson));
    if (opts.primary) {
        const main = path.join(dir, "manifests", "tools.json");
        const existingMain = fs.existsSync(main) ? JSON.parse(fs.readFileSync(main, "utf8")) as ToolsJson : undefined;
        await put(main, stableJson(toolsJsonFor(record, source, existingMain)));
    }
    const files = readReleaseFiles(dir);
    await put(path.join(dir, "docs", "releases.md"), renderChangelog(files, (image, version) => {
        const f = manifestFile(dir, image, version);
        return fs.existsSync(f) ? fs.readFileSync(f, "utf8") : undefined;
    }));
    return changed;
}
