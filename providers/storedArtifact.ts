// Dynamic provider: one image version in the artifact store, under its stable path and URL.
// The qcow2 is hard-linked from the build cache when both share a file system (no copy, no re-hash); otherwise it
// is copied through <file>.partial and the copy's digest is checked against the build's before the rename.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import { ensureFreeSpace, writeFileAtomic, writeFileIfChanged, explainFsError } from "../lib/atomic";
import { copyFileHashed, hashFile, sha256sumLine, parseSha256sums } from "../lib/sha256";
import { artifactPaths, artifactUrl, removeEmptyDirs } from "../lib/publish/store";
import {dynamicResource } from "./dynamic";

export interface StoredArtifactInputs {
    storeRoot: string;
    baseUrl: string;
    name: string;
    version: string;
    source: string;
    sha256: string;
    size: number;
    buildJsonPath: string;
    pkgManifestPath: string;
    /** The full build log, kept next to the artifact (secrets already redacted when it was written). */
    logPath: string;
    /** File extension by artifact format: qcow2 (default), img.xz, iso. */
    ext?: string;
}

export interface StoredArtifactOutputs extends StoredArtifactInputs {
    path: string;
    url: string;
    sha256Url: string;
    buildJsonUrl: string;
    relPath: string;
    /** The stored file's modification time when placed: a write behind our back changes it (a flipped byte keeps the size). */
    fileMtimeMs?: number;
}

const SIDE_FILES = ["build.json", "pkg-manifest.txt", "build.log"] as const;

function describe(i: StoredArtifactInputs): StoredArtifactOutputs {
    const p = artifactPaths(i.storeRoot, i.name, i.version, i.ext ?? "qcow2");
    const rel = p.relFile;
    return {
        ...i,
        path: p.file,
        relPath: rel,
        url: artifactUrl(i.baseUrl, rel),
        sha256Url: artifactUrl(i.baseUrl, `${rel}.sha256`),
        buildJsonUrl: artifactUrl(i.baseUrl, rel.replace(/[^/]+$/, "build.json")),
    };
}

/** True when the stored copy is the one described (size, modification time if recorded, recorded digest; no re-hash). */
function intact(o: StoredArtifactOutputs): boolean {
    try {
        const p = artifactPaths(o.storeRoot, o.name, o.version, o.ext ?? "qcow2");
        const st = fs.statSync(p.file);
        if (st.size !== o.size || (o.fileMtimeMs !== undefined && st.mtimeMs !== o.fileMtimeMs)) return false;
        return parseSha256sums(fs.readFileSync(p.sha256File, "utf8")).get(p.fileName) === o.sha256;
    } catch {
        return false;
    }
}

/** Puts the artifact in place; `repair` re-places it even when the quick check passes (it was found damaged). */
async function place(i: StoredArtifactInputs, repair = false): Promise<StoredArtifactOutputs> {
    const out = describe(i);
    const p = artifactPaths(i.storeRoot, i.name, i.version, i.ext ?? "qcow2");
    try {
        await fs.promises.mkdir(p.dir, { recursive: true });
        if (repair || !intact(out)) {
            // Never publish damaged bytes: the build output is checked before it is linked (a copy is checked as it goes).
            const src = await hashFile(i.source);
            if (src.sha256 !== i.sha256 || src.size !== i.size) {
                throw new Error(`${i.source} has sha256 ${src.sha256} (${src.size} bytes), the build recorded ${i.sha256} (${i.size}): the build output is damaged, ` +
                    "nothing was stored: run pulumi refresh (it drops the damaged build), then pulumi up (it builds it again)");
            }
            const partial = `${p.file}.partial`;
            await fs.promises.rm(partial, { force: true });
            try {
                await fs.promises.link(i.source, partial);
                await fs.promises.rename(partial, p.file);
            } catch (err) {
                if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
                // Another file system: a real copy, which must fit (checked first, so a full disk leaves nothing behind).
                ensureFreeSpace(p.dir, i.size, path.basename(p.file));
                const d = await copyFileHashed(i.source, p.file);
                if (d.sha256 !== i.sha256 || d.size !== i.size) {
                    await fs.promises.rm(p.file, { force: true });
                    throw new Error(`copy of ${i.source} into the store has sha256 ${d.sha256} (${d.size} bytes), the build recorded ${i.sha256} (${i.size}): the build cache is corrupt; delete ${path.dirname(i.source)} and run again`);
                }
            }
            await writeFileAtomic(p.sha256File, sha256sumLine(i.sha256, p.fileName));
        }
        out.fileMtimeMs = fs.statSync(p.file).mtimeMs;
        await writeFileIfChanged(path.join(p.dir, SIDE_FILES[0]), await fs.promises.readFile(i.buildJsonPath, "utf8"));
        await writeFileIfChanged(path.join(p.dir, SIDE_FILES[1]), await fs.promises.readFile(i.pkgManifestPath, "utf8"));
        await writeFileIfChanged(path.join(p.dir, SIDE_FILES[2]), await fs.promises.readFile(i.logPath, "utf8"));
    } catch (err) {
        throw explainFsError(err, p.dir, i.size);
    }
    return out;
}

export const provider: pulumi.dynamic.ResourceProvider<StoredArtifactInputs, StoredArtifactOutputs> = {
    async create(inputs) {
        const outs = await place(inputs);
        return { id: outs.relPath, outs };
    },
    async diff(_id, olds, news) {
        const replaces = (["storeRoot", "name", "version", "sha256"] as const).filter((k) => olds[k] !== news[k]);
        // A missing or damaged stored file is repaired in place (update), not replaced.
        const stale = replaces.length === 0 && !intact(olds);
        const samePath = describe(olds).path === describe(news).path;
        return {
            changes: replaces.length > 0 || stale || olds.baseUrl !== news.baseUrl,
            replaces,
            // Same path (a pinned version rebuilt): the old files must go before the new ones are placed.
            deleteBeforeReplace: samePath,
        };
    },
    async update(_id, olds, news) {
        return { outs: await place(news, !intact(olds)) };
    },
    async read(id, props) {
        // Refresh re-hashes the stored file: a damaged one drops out of the state and the next up places it again.
        if (!props || !intact(props) || (await hashFile(props.path)).sha256 !== props.sha256) return { id: "", props: undefined };
        return { id, props };
    },
    async delete(_id, props) {
        const p = artifactPaths(props.storeRoot, props.name, props.version, props.ext ?? "qcow2");
        // Only what this resource wrote; a replacement under the same path (same version) is left alone.
        if (fs.existsSync(p.sha256File) && parseSha256sums(fs.readFileSync(p.sha256File, "utf8")).get(p.fileName) !== props.sha256) return;
        for (const f of [p.file, p.sha256File, ...SIDE_FILES.map((s) => path.join(p.dir, s))]) await fs.promises.rm(f, { force: true });
        await removeEmptyDirs(path.join(props.storeRoot, "images", props.name));
    },
};

export const StoredArtifact = dynamicResource("StoredArtifact", provider, { outputs: ["path", "url", "sha256Url", "buildJsonUrl", "relPath"], shown: ["sha256", "size", "version"] });
export type StoredArtifact = InstanceType<typeof StoredArtifact>;
