"use strict";
// Loads the program's TypeScript for Pulumi's nodejs runtime (Pulumi.yaml: `nodeargs: --require` this file,
// `typescript: false`). Why not the runtime's own ts-node: it transpiles every file on every run, so a no-op
// `pulumi up` spent ~3 s of CPU (the largest share of the program's time) loading TypeScript and compiling the
// same unchanged sources. Here each file's JavaScript is kept in the per-user cache under the sha256 of what
// shapes it (this loader, the TypeScript version, tsconfig.json, the file's name and bytes); an unchanged
// program starts without loading the compiler at all. As with ts-node's transpile-only mode (which we used
// before), types are checked by `npm test` and the PR checks (tsc --noEmit), not at deploy time.
// Plain CommonJS JavaScript on purpose: it is what makes TypeScript loadable.
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const LOADER_VERSION = "1";
const projectDir = path.resolve(__dirname, "..");
// The per-user cache root, by the rule of lib/cacheRoot.ts (which this file cannot import: it is what loads .ts).
const cacheDir = path.join(
    process.env.IMAGE_FACTORY_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "image-factory"),
    "ts-js",
);

let ts; // the compiler, loaded on the first cache miss only
let compilerOptions;
let baseKey;

function base() {
    if (baseKey === undefined) {
        const tsVersion = require(require.resolve("typescript/package.json", { paths: [projectDir] })).version;
        const tsconfig = fs.readFileSync(path.join(projectDir, "tsconfig.json"));
        baseKey = crypto.createHash("sha256").update(`${LOADER_VERSION}\0${tsVersion}\0`).update(tsconfig).digest("hex");
    }
    return baseKey;
}

function transpile(source, filename) {
    if (ts === undefined) {
        ts = require(require.resolve("typescript", { paths: [projectDir] }));
        const file = path.join(projectDir, "tsconfig.json");
        const json = ts.readConfigFile(file, ts.sys.readFile);
        if (json.error) throw new Error(`tsconfig.json: ${ts.flattenDiagnosticMessageText(json.error.messageText, "\n")}`);
        compilerOptions = {
            ...ts.convertCompilerOptionsFromJson(json.config.compilerOptions || {}, projectDir).options,
            // The package is CommonJS (no "type": "module"), which is what nodenext makes of every .ts file here.
            module: ts.ModuleKind.CommonJS,
            moduleResolution: ts.ModuleResolutionKind.Node10,
            sourceMap: false,
            inlineSourceMap: true,
            inlineSources: false,
            declaration: false,
            noEmit: false,
        };
    }
    const out = ts.transpileModule(source, { compilerOptions, fileName: path.basename(filename), reportDiagnostics: true });
    const syntax = (out.diagnostics || []).filter((d) => d.category === ts.DiagnosticCategory.Error);
    if (syntax.length > 0) {
        const d = syntax[0];
        const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
        const err = new SyntaxError(`${filename}${at ? `:${at.line + 1}:${at.character + 1}` : ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
        err.stack = err.message;
        throw err;
    }
    return out.outputText;
}

function compiled(source, filename) {
    // The name is in the key because the inline source map names the file (relative: a copy elsewhere shares it).
    const key = crypto.createHash("sha256").update(base()).update(`\0${path.basename(filename)}\0`).update(source).digest("hex");
    const cached = path.join(cacheDir, key.slice(0, 2), `${key}.js`);
    try {
        return fs.readFileSync(cached, "utf8");
    } catch {
        const js = transpile(source, filename);
        try {
            fs.mkdirSync(path.dirname(cached), { recursive: true });
            const partial = `${cached}.${process.pid}.partial`;
            fs.writeFileSync(partial, js);
            fs.renameSync(partial, cached);
        } catch {
            // A read-only cache only costs the transpile next time.
        }
        return js;
    }
}

// Stack traces name the .ts lines (the inline source maps).
process.setSourceMapsEnabled(true);

require.extensions[".ts"] = function loadTypeScript(module, filename) {
    module._compile(compiled(fs.readFileSync(filename, "utf8"), filename), filename);
};

module.exports = { compiled, cacheDir };
