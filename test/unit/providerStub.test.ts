// What Pulumi serializes into each dynamic resource is a small stub that loads the project's provider for its type
// (providers/dynamic.ts). Checked here the way the dynamic-provider process uses it: the serialized text is
// evaluated as a module in a separate node process whose working directory is the project, and called.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { FORMER_TYPES, PROVIDER_MODULES, providerStub } from "../../providers/dynamic";
import { provider as storeRootProvider } from "../../providers/storeRoot";
import { provider as imageBuildProvider } from "../../providers/imageBuild";
import { REPO_ROOT } from "../helpers/setup";

describe("providers/dynamic: the serialized provider is a stub that loads the project's code", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-stub-"));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("mirrors exactly the methods its provider has (the engine behaves differently without check or read)", () => {
        const stub = providerStub("X", { async create() { return { id: "x" }; }, async delete() { /* nothing */ } });
        assert.deepEqual(Object.keys(stub).sort(), ["create", "delete"]);
        assert.deepEqual(Object.keys(providerStub("StoreRoot", storeRootProvider)).sort(), ["check", "create", "delete", "diff", "read", "update"]);
    });

    it("serializes to a few KB without the provider's code (qcow2Build's provider itself is ~200 KB)", async () => {
        const stub = providerStub("ImageBuild", imageBuildProvider);
        const { text } = await pulumi.runtime.serializeFunction(() => stub, { allowSecrets: false });
        assert.ok(text.length < 8 * 1024, `stub text is ${text.length} bytes`);
        assert.doesNotMatch(text, /buildImage|debootstrap|sha256/, "no implementation inside the state");
        // The provider itself is either far bigger or cannot be serialized at all (zod's bound native methods, which
        // lib/contract.ts brings in): either way only a stub can go into the state.
        const full = await pulumi.runtime.serializeFunction(() => imageBuildProvider, { allowSecrets: false }).then((f) => f.text, (e: Error) => e);
        if (full instanceof Error) assert.match(full.message, /could not be serialized/);
        else assert.ok(full.length > 20 * text.length, `the provider itself serializes to ${full.length} bytes`);
    });

    it("evaluated in another process in the project directory, it runs the project's provider", async () => {
        const stub = providerStub("StoreRoot", storeRootProvider);
        const { text, exportName } = await pulumi.runtime.serializeFunction(() => stub, { allowSecrets: false });
        const file = path.join(dir, "serialized.js");
        fs.writeFileSync(file, text);
        // As @pulumi/pulumi/cmd/dynamic-provider does: evaluate the module, call its export, use the provider.
        const script = `
            const p = require(${JSON.stringify(file)})[${JSON.stringify(exportName)}]();
            (async () => {
                const bad = await p.check({}, { root: "relative/dir" });
                const root = ${JSON.stringify(path.join(dir, "store"))};
                const made = await p.create({ root });
                console.log(JSON.stringify({ failures: bad.failures, id: made.id, layout: made.outs.layout, marker: require("fs").readdirSync(root) }));
            })().catch((e) => { console.error(e.stack); process.exit(1); });`;
        const r = await execa("node", ["-e", script], { cwd: REPO_ROOT, reject: false, env: { IMAGE_FACTORY_CACHE: path.join(dir, "cache") } });
        assert.equal(r.exitCode, 0, r.stderr);
        const out = JSON.parse(r.stdout) as { failures: Array<{ property: string; reason: string }>; id: string; layout: string; marker: string[] };
        assert.deepEqual(out.failures, [{ property: "root", reason: "must be absolute, got relative/dir" }]);
        assert.equal(out.id, path.join(dir, "store"));
        assert.ok(out.marker.length > 0, "the store root marker was written by the loaded provider");
    });

    it("every dynamic type in providers/ is in PROVIDER_MODULES, and each entry loads a provider", async () => {
        const declared = new Set<string>();
        for (const f of fs.readdirSync(path.join(REPO_ROOT, "providers")).filter((n) => n.endsWith(".ts"))) {
            const src = fs.readFileSync(path.join(REPO_ROOT, "providers", f), "utf8");
            for (const m of src.matchAll(/dynamicResource\("(\w+)", provider/g)) declared.add(m[1]);
        }
        assert.ok(declared.size >= 13, [...declared].join(", "));
        // A renamed type keeps a line, to the module of its new name: the stubs in older state still name it.
        for (const [former, now] of Object.entries(FORMER_TYPES)) {
            assert.ok(!declared.has(former), `${former} was renamed to ${now}: no class may declare it again`);
            assert.equal(PROVIDER_MODULES[former], PROVIDER_MODULES[now], former);
            declared.add(former);
        }
        assert.deepEqual([...declared].sort(), Object.keys(PROVIDER_MODULES).sort());
        const script = `
            require("./scripts/require-ts-cached.js");
            const { loadProvider, PROVIDER_MODULES } = require("./providers/dynamic.ts");
            console.log(JSON.stringify(Object.keys(PROVIDER_MODULES).map((t) => [t, typeof loadProvider(t).create])));`;
        const r = await execa("node", ["-e", script], { cwd: REPO_ROOT, env: { IMAGE_FACTORY_CACHE: path.join(dir, "cache") } });
        for (const [type, create] of JSON.parse(r.stdout) as Array<[string, string]>) assert.equal(create, "function", type);
    });
});
