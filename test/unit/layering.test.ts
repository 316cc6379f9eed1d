// The rooms of the code and the doors between them (DESIGN §2): lib/ is plain code without Pulumi; lib/stages (the
// builders) is a leaf that the general modules of lib/ do not depend on at run time; nothing in lib/ reaches up into
// components/ or providers/. Read from the import statements of the files themselves.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/setup";

interface Import { from: string; to: string; typeOnly: boolean }

function importsOf(dir: string): Import[] {
    const out: Import[] = [];
    for (const f of fs.readdirSync(path.join(REPO_ROOT, dir)).filter((x) => x.endsWith(".ts"))) {
        const file = path.join(dir, f);
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
    const lib = importsOf("lib");
    const stages = importsOf("lib/stages");

    it("finds the imports it checks (the reader works)", () => {
        assert.ok(lib.some((i) => i.from === "lib/oci.ts" && i.to === "lib/exec"), JSON.stringify(lib.slice(0, 5)));
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

    it("lib/stages imports only itself and lib/'s general modules", () => {
        const bad = stages.filter((i) => i.to.startsWith("lib/") && !i.to.startsWith("lib/stages/") && path.dirname(i.to) !== "lib");
        assert.deepEqual(bad, []);
    });
});
