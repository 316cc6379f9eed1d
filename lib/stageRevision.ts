// The builders' revision, part of every build key: a change to the code of lib/stages is a change to the output,
// so it rebuilds. It fingerprints that code by what it declares, not by how it is laid out in files: each top-level
// statement as its syntax tree (no comments, whitespace or `export`), imports and type-only declarations left out,
// the list sorted. Moving a function between stage files, renaming a file or an import keeps the fingerprint; changing any
// statement changes it. (Until issue 21 it hashed the files themselves, so the move of lib/build to lib/stages alone
// would have rebuilt every image of every stack.)
//
// EQUIVALENT_REVISIONS maps a fingerprint to the revision of an earlier layout whose builds it reproduces
// bit for bit; an entry is added only with that proof, and stops applying at the next change of the code.
import * as fs from "node:fs";
import * as path from "node:path";
import { cacheRoot } from "./cacheRoot";
import { sha256Hex as sha256 } from "./sha256";

/** An earlier revision the current stage code reproduces, for the builders where that was shown. */
export interface Equivalence {
    revision: string;
    builders: readonly string[];
}

export const EQUIVALENT_REVISIONS: Readonly<Record<string, readonly Equivalence[]>> = {
    // Issue 20: debootstrap's and apt's trees kept (treeCache.ts), dpkg without fsync, one initramfs instead of two,
    // and a build admitted by the build budget before it starts (lib/buildBudget.ts: waits, runs no command).
    // Proof (bench/equivalence.ts 4ae5082 debian-12-minimal): the same sha256 (aeca215c…, key de54161b…) from a build
    // that made its trees and from one that unpacked them; bench/reproducibility.ts: made and unpacked, the same bytes.
    // Nothing the ISO, Packer and Pi builders run changed: each keeps the revision it had.
    "8664d7af7cfa29a0d835952d1b47eac2540db4cd63b0bfc9292d72195d30da28": [
        { revision: "901cd4670b8f2935", builders: ["rootfs", "packer", "pi", "packer-proxmox"] },
        { revision: "285ef1cd19ea35d4", builders: ["iso"] },
    ],
    // lib/build (revision 901cd4670b8f2935, commit 4ae5082) moved to lib/stages (helpers to lib/sha256.ts, lib/aptSources.ts,
    // lib/toolVersions.ts, lib/isoFormat.ts), requiredCommands.ts throwing a ToolMissingError, and each builder written
    // as a list of named steps over one context (steps.ts), BuildRequest a union, convertQcow2 in disk.ts, the
    // Packer → Proxmox key in plan.ts. No command, order or input of a build changed, and the only literal that reaches
    // an artifact and changed is the installer ISO's preseed header (it named lib/build/iso.ts), so ISO builds are
    // left out: they rebuild once (seconds). Proof (bench/equivalence.ts 4ae5082): debian-12-minimal the same sha256
    // (9bc4088f…); nocloud-seed-iso the same (15fd67e3…), debian-12-installer-iso not (e40f19f0… vs e401f293…; the
    // same difference 0c1c9b3 had, whose entry a5c93a30… covered every builder and applies no more).
    "285ef1cd19ea35d416d4b1f77a21f12d6e3478694286ae5c648242982b7c96b7": [{ revision: "901cd4670b8f2935", builders: ["rootfs", "packer", "pi", "packer-proxmox"] }],
};

const FINGERPRINT_SCHEME = "syntax-tree-v1";
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a version string only, without loading the compiler
const typescriptVersion = () => (require("typescript/package.json") as { version: string }).version;
const memo = new Map<string, string>();

/** The stage files' layout-free fingerprint (hex); computed once per content, kept in the per-user cache. */
export function stagesFingerprint(dir: string): string {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith(".ts")).sort();
    const contents = files.map((f) => fs.readFileSync(path.join(dir, f), "utf8"));
    // The scheme and the parser's version are part of the key: either can change the fingerprint of the same files.
    const key = sha256([FINGERPRINT_SCHEME, typescriptVersion(), ...files.map((f, i) => `${f}\0${sha256(contents[i])}`)].join("\n"));
    const known = memo.get(key) ?? readCache()[key];
    if (known) {
        memo.set(key, known);
        return known;
    }
    const fingerprint = fingerprintOf(contents);
    memo.set(key, fingerprint);
    writeCache(key, fingerprint);
    return fingerprint;
}

/** The revision that goes into a build's key: an equivalent earlier revision for that builder, else the fingerprint's first 16 hex. */
export function stagesRevision(dir: string, builder: string): string {
    const fingerprint = stagesFingerprint(dir);
    const earlier = EQUIVALENT_REVISIONS[fingerprint]?.find((e) => e.builders.includes(builder));
    return earlier?.revision ?? fingerprint.slice(0, 16);
}

/**
 * The fingerprint of TypeScript sources: their runtime top-level statements, each as its syntax tree (node kinds by
 * name, identifiers, literal texts; no comments, whitespace or quote style), sorted. `export` is dropped, so is
 * every import and type-only declaration.
 */
export function fingerprintOf(sources: readonly string[]): string {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only when the stage code changed (it is slow to load)
    const ts = require("typescript") as typeof import("typescript");
    const serialize = (node: import("typescript").Node, out: string[]): void => {
        if (node.kind === ts.SyntaxKind.ExportKeyword || node.kind === ts.SyntaxKind.DefaultKeyword) return;
        out.push(ts.SyntaxKind[node.kind]);
        if (ts.isIdentifier(node) || ts.isPrivateIdentifier(node)) out.push(node.text);
        else if (ts.isLiteralExpression(node) || ts.isTemplateLiteralToken(node)) out.push(JSON.stringify((node as { rawText?: string }).rawText ?? node.text));
        out.push("(");
        ts.forEachChild(node, (child) => serialize(child, out));
        out.push(")");
    };
    const declarations: string[] = [];
    for (const text of sources) {
        const sf = ts.createSourceFile("stage.ts", text, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
        for (const st of sf.statements) {
            if (ts.isImportDeclaration(st) || ts.isImportEqualsDeclaration(st) || ts.isExportDeclaration(st) ||
                ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st)) continue;
            const out: string[] = [];
            serialize(st, out);
            declarations.push(out.join(" "));
        }
    }
    return sha256(declarations.sort().join("\n"));
}

function cacheFile(): string {
    return path.join(cacheRoot(), "stage-fingerprints.json");
}

function readCache(): Record<string, string> {
    try {
        return JSON.parse(fs.readFileSync(cacheFile(), "utf8")) as Record<string, string>;
    } catch {
        return {};
    }
}

function writeCache(key: string, fingerprint: string): void {
    // A cache: losing a write costs one more parse; entries are few (one per stage code version used here).
    try {
        const file = cacheFile();
        const all = { ...readCache(), [key]: fingerprint };
        const keep = Object.fromEntries(Object.entries(all).slice(-64));
        fs.mkdirSync(path.dirname(file), { recursive: true });
        const tmp = `${file}.${process.pid}.partial`;
        fs.writeFileSync(tmp, `${JSON.stringify(keep)}\n`);
        fs.renameSync(tmp, file);
    } catch {
        // read-only cache: recompute next time
    }
}
