// Compares two directory trees (e.g. two builds' root file systems): which paths exist in only one, and which
// differ in type, mode, link target or content.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export interface TreeEntry {
    type: "file" | "dir" | "symlink" | "other";
    mode: number;
    target?: string;
    sha256?: string;
}

export function scanTree(root: string): Map<string, TreeEntry> {
    const out = new Map<string, TreeEntry>();
    const walk = (rel: string) => {
        const abs = path.join(root, rel);
        for (const name of fs.readdirSync(abs).sort()) {
            const r = rel ? `${rel}/${name}` : name;
            const p = path.join(root, r);
            const st = fs.lstatSync(p);
            const mode = st.mode & 0o7777;
            if (st.isSymbolicLink()) out.set(r, { type: "symlink", mode, target: fs.readlinkSync(p) });
            else if (st.isDirectory()) {
                out.set(r, { type: "dir", mode });
                walk(r);
            } else if (st.isFile()) out.set(r, { type: "file", mode, sha256: crypto.createHash("sha256").update(fs.readFileSync(p)).digest("hex") });
            else out.set(r, { type: "other", mode });
        }
    };
    walk("");
    return out;
}

export interface TreeDiff {
    onlyA: string[];
    onlyB: string[];
    differing: string[];
    same: number;
}

export function diffTrees(a: Map<string, TreeEntry>, b: Map<string, TreeEntry>): TreeDiff {
    const d: TreeDiff = { onlyA: [], onlyB: [], differing: [], same: 0 };
    for (const [p, ea] of a) {
        const eb = b.get(p);
        if (!eb) d.onlyA.push(p);
        else if (ea.type !== eb.type || ea.mode !== eb.mode || ea.target !== eb.target || ea.sha256 !== eb.sha256) d.differing.push(p);
        else d.same++;
    }
    for (const p of b.keys()) if (!a.has(p)) d.onlyB.push(p);
    return d;
}
