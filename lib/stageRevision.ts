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

export const EQUIVALENT_REVISIONS: Readonly<Record<string, string>> = {
    // lib/build (revision 901cd4670b8f2935, commit 4ae5082) moved to lib/stages, with sha256Hex and canonicalJson to
    // lib/sha256.ts, toolVersions to lib/, DebianSource to lib/aptSources.ts and the ISO readers to lib/isoFormat.ts;
    // plan.ts asks this module for the revision and requiredCommands.ts throws a ToolMissingError; no step of a build
    // changed. debian-12-minimal built by 4ae5082 and by this code (bench/equivalence.ts): the same sha256.
    a5c93a30521df22167f478ca319f464e014b54b4757c73462143e840bdc1bd6d: "901cd4670b8f2935",
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

/** The revision that goes into build keys: an equivalent earlier revision, else the fingerprint's first 16 hex. */
export function stagesRevision(dir: string): string {
    const fingerprint = stagesFingerprint(dir);
    return EQUIVALENT_REVISIONS[fingerprint] ?? fingerprint.slice(0, 16);
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
