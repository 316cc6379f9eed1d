// Content addressing: everything that can change an image's bytes hashes to its build key. An artifact that
// already exists under a key is reused instead of rebuilt.
import * as fs from "node:fs";
import * as path from "node:path";
import { canonicalJson, sha256Hex } from "../sha256";

export interface BuildKeyInputs {
    builder: string;
    /** Builder code revision: a change to the pipeline is a change to the output. */
    builderRevision: string;
    recipe: Record<string, unknown>;
    /** Recipe files relative to the project, with their sha256. */
    files: Record<string, string>;
    variables: Record<string, unknown>;
    base: { id: string; sha256: string } | null;
    tools: Record<string, string>;
}


export function computeBuildKey(inputs: BuildKeyInputs): string {
    return sha256Hex(canonicalJson(inputs));
}

/** sha256 of small files (recipes, playbooks), keyed by their path relative to `base`. */
export function hashFiles(files: readonly string[], base: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const f of [...files].sort()) out[path.relative(base, f).split(path.sep).join("/")] = sha256Hex(fs.readFileSync(f));
    return out;
}

/** A deterministic RFC 4122-shaped UUID derived from a key (file system UUIDs that do not change run to run). */
export function uuidFromKey(key: string, salt = ""): string {
    const h = sha256Hex(`${salt}:${key}`);
    const v = `${h.slice(0, 12)}4${h.slice(13, 16)}${((parseInt(h[16], 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 32)}`;
    return `${v.slice(0, 8)}-${v.slice(8, 12)}-${v.slice(12, 16)}-${v.slice(16, 20)}-${v.slice(20, 32)}`;
}
