// The builders' revision in every build key (lib/stageRevision.ts): a change to what the stage code does rebuilds;
// moving code between files, comments, imports and types do not.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EQUIVALENT_REVISIONS, fingerprintOf, stagesFingerprint, stagesRevision } from "../../lib/stageRevision";

const A = `import { x } from "./b";\n// why\nexport function f(a: number): number {\n    return a + x;\n}\n`;
const B = `export const x = 1;\nexport interface T { a: string }\nfunction g(): string { return "g"; }\n`;

describe("lib/stageRevision: the builders' revision follows the code, not its layout", () => {
    it("moving a function to another file, renaming files, comments, imports and types keep the fingerprint", () => {
        const base = fingerprintOf([A, B]);
        assert.match(base, /^[0-9a-f]{64}$/);
        const moved = [`import { g } from "./a";\nexport const x = 1;\n`, `/** docs */ export function f(a: number): number { return a + x; }\nexport function g(): string {\n  return "g";\n}\ntype U = string;\n`];
        assert.equal(fingerprintOf(moved), base);
        assert.equal(fingerprintOf([B, A]), base);
    });

    it("any change to a statement changes it", () => {
        const base = fingerprintOf([A, B]);
        assert.notEqual(fingerprintOf([A.replace("a + x", "a - x"), B]), base);
        assert.notEqual(fingerprintOf([A, B.replace("x = 1", "x = 2")]), base);
        assert.notEqual(fingerprintOf([A, B, "console.log(1);\n"]), base);
    });

    it("a directory's fingerprint is cached by content, and an equivalent earlier revision is used when one is recorded", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-stages-"));
        const prev = process.env.IMAGE_FACTORY_CACHE;
        process.env.IMAGE_FACTORY_CACHE = path.join(dir, "cache");
        try {
            fs.writeFileSync(path.join(dir, "a.ts"), A);
            fs.writeFileSync(path.join(dir, "b.ts"), B);
            const f = stagesFingerprint(dir);
            assert.equal(f, fingerprintOf([A, B]));
            assert.equal(stagesRevision(dir, "rootfs"), f.slice(0, 16));
            assert.ok(Object.values(JSON.parse(fs.readFileSync(path.join(dir, "cache", "stage-fingerprints.json"), "utf8"))).includes(f));
            // The real stage code: its revision is the recorded equivalent for the builders it was shown for.
            const real = path.join(__dirname, "..", "..", "lib", "stages");
            const rf = stagesFingerprint(real);
            for (const builder of ["rootfs", "packer", "pi", "iso", "packer-proxmox"]) {
                const earlier = EQUIVALENT_REVISIONS[rf]?.find((e) => e.builders.includes(builder));
                assert.equal(stagesRevision(real, builder), earlier?.revision ?? rf.slice(0, 16), builder);
            }
        } finally {
            if (prev === undefined) delete process.env.IMAGE_FACTORY_CACHE;
            else process.env.IMAGE_FACTORY_CACHE = prev;
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
