// scripts/require-ts-cached.js loads the program's TypeScript for `pulumi up` (Pulumi.yaml nodeargs): each file is
// transpiled once and kept by content, so a warm run never loads the compiler; errors still point at .ts lines.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/setup";

const LOADER = path.join(REPO_ROOT, "scripts", "require-ts-cached.js");
// Printed by the child after loading the program: did the TypeScript compiler get loaded?
const REPORT = `process.on("exit", () => console.log("compiler-loaded=" + Object.keys(require.cache).some((k) => k.includes("/typescript/lib/"))));`;

describe("scripts/require-ts-cached.js: the program's TypeScript, transpiled once", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-tsjs-"));
    const cache = path.join(dir, "cache");
    const run = (file: string) => execa("node", ["-r", LOADER, "-e", `${REPORT} require(${JSON.stringify(file)})`], {
        env: { IMAGE_FACTORY_CACHE: cache }, reject: false, cwd: REPO_ROOT,
    });
    const cached = () => (fs.existsSync(path.join(cache, "ts-js")) ? fs.readdirSync(path.join(cache, "ts-js"), { recursive: true }).filter((f) => String(f).endsWith(".js")).length : 0);
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("transpiles on the first run, then runs from the cache without loading the compiler", async () => {
        const file = path.join(dir, "hello.ts");
        fs.writeFileSync(file, `import * as path from "node:path";\nconst n: number = 41;\nconsole.log("answer=" + (n + 1) + " " + path.basename(__filename));\n`);
        const first = await run(file);
        assert.equal(first.exitCode, 0, first.stderr);
        assert.match(first.stdout, /^answer=42 hello\.ts$/m);
        assert.match(first.stdout, /compiler-loaded=true/);
        assert.equal(cached(), 1);
        const second = await run(file);
        assert.match(second.stdout, /^answer=42 hello\.ts$/m);
        assert.match(second.stdout, /compiler-loaded=false/, "a warm run does not load TypeScript");
        assert.equal(cached(), 1);
    });

    it("a changed file is transpiled again (the cache is keyed by content, never stale)", async () => {
        const file = path.join(dir, "hello.ts");
        fs.writeFileSync(file, `const n: number = 1;\nconsole.log("answer=" + n);\n`);
        const r = await run(file);
        assert.match(r.stdout, /^answer=1$/m);
        assert.match(r.stdout, /compiler-loaded=true/);
        assert.equal(cached(), 2);
    });

    it("a runtime error's stack names the .ts file and line; a syntax error names file, line and column", async () => {
        const thrower = path.join(dir, "thrower.ts");
        fs.writeFileSync(thrower, `type T = { a: string };\nconst t: T = { a: "x" };\n\n\nfunction boom(): never {\n    throw new Error("boom " + t.a);\n}\nboom();\n`);
        const r = await run(thrower);
        assert.notEqual(r.exitCode, 0);
        assert.match(r.stderr, /thrower\.ts:6:\d+/, r.stderr);
        const broken = path.join(dir, "broken.ts");
        fs.writeFileSync(broken, `const a = 1;\nconst b = ;\n`);
        const s = await run(broken);
        assert.notEqual(s.exitCode, 0);
        assert.match(s.stderr, /broken\.ts:2:11: Expression expected/, s.stderr);
    });
});
