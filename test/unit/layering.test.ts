// The rooms of the code and the doors between them (DESIGN §2): lib/ is plain code without Pulumi, its folders the
// pipeline's rooms (stages, validation, publish, baseImages, evidence) around general modules; lib/stages (the
// builders) is a leaf the rest of lib/ does not depend on at run time; nothing in lib/ reaches up into components/
// or providers/. Read from the import statements of the files themselves.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/setup";

interface Import { from: string; to: string; typeOnly: boolean }

/** The relative and package imports of every .ts file under `dir` (recursively), with their targets resolved. */
function importsOf(dir: string, opts: { recursive?: boolean; skip?: string } = {}): Import[] {
    const out: Import[] = [];
    for (const entry of fs.readdirSync(path.join(REPO_ROOT, dir), { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) {
            if (opts.recursive && file !== opts.skip) out.push(...importsOf(file, opts));
            continue;
        }
        if (!entry.name.endsWith(".ts")) continue;
        const text = fs.readFileSync(path.join(REPO_ROOT, file), "utf8");
        for (const m of text.matchAll(/^import\s+(type\s+)?[^;]*?from\s+"([^"]+)";/gms)) {
            const spec = m[2];
            const to = spec.startsWith(".") ? path.normalize(path.join(dir, spec)) : spec;
            out.push({ from: file, to, typeOnly: !!m[1] });
        }
    }
    return out;
}

describe("layering: what may import what", () => {
    // lib/ and its rooms (validation, publish, baseImages, evidence), lib/stages apart.
    const lib = importsOf("lib", { recursive: true, skip: "lib/stages" });
    const stages = importsOf("lib/stages");

    it("finds the imports it checks (the reader works)", () => {
        assert.ok(lib.some((i) => i.from === "lib/publish/oci.ts" && i.to === "lib/exec"), JSON.stringify(lib.slice(0, 5)));
        assert.ok(stages.some((i) => i.from === "lib/stages/plan.ts" && i.to === "lib/stages/buildKey"));
    });

    it("lib/ and lib/stages never import Pulumi, components/ or providers/", () => {
        const bad = [...lib, ...stages].filter((i) => i.to.startsWith("@pulumi/") || i.to.startsWith("components") || i.to.startsWith("providers"));
        assert.deepEqual(bad, []);
    });

    it("lib/stages is a leaf: general modules of lib/ use nothing of it at run time (types of a build's result only)", () => {
        const bad = lib.filter((i) => i.to.startsWith("lib/stages/") && !i.typeOnly);
        assert.deepEqual(bad, [], "move what general code needs (hashing, tool versions, ISO reading) out of lib/stages");
    });

    it("lib/stages imports only itself, lib/'s general modules and the two clients it builds with (image inspection, Proxmox API)", () => {
        const allowed = new Set(["lib/validation/inspect", "lib/publish/proxmoxApi"]);
        const bad = stages.filter((i) => i.to.startsWith("lib/") && !i.to.startsWith("lib/stages/") && path.dirname(i.to) !== "lib" && !allowed.has(i.to));
        assert.deepEqual(bad, []);
    });

    it("validation and base images never import a publishing client", () => {
        // validation and base images read images; they never reach a publishing client
        const bad = lib.filter((i) => /^lib\/(validation|baseImages)\//.test(i.from) && i.to.startsWith("lib/publish/"));
        assert.deepEqual(bad, []);
    });
});
