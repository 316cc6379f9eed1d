// lib/stages/steps.ts: a builder is a list of named steps; the "[n/total]" of its progress is derived from the list.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BuildLog } from "../../lib/buildlog";
import { isoBuilder } from "../../lib/stages/iso";
import { packerBuilder } from "../../lib/stages/packer";
import { piBuilder } from "../../lib/stages/pi";
import { rootfsBuilder } from "../../lib/stages/rootfs";
import { runBuilder, type Builder } from "../../lib/stages/steps";

interface Toy { done: string[]; fail?: string }

function toyBuilder(released: string[]): Builder<{ fail?: string }, Toy> {
    const step = (name: string) => ({
        name, run(c: Toy) {
            if (c.fail === name) throw new Error(`${name} broke`);
            c.done.push(name);
        },
    });
    return {
        open: (spec) => ({ done: [], fail: spec.fail }),
        steps: [step("first"), { name: (c: Toy) => `second after ${c.done.join("+")}`, run: (c: Toy) => void c.done.push("second") }, step("third")],
        release: async (c) => void released.push(`released after ${c.done.join(",")}`),
        finish: { name: "finish", run: async (c, out) => fs.writeFileSync(out, c.done.join("\n")) },
        output: (c) => ({ pkgManifest: "", base: c.done.length }),
    };
}

describe("build steps (lib/stages/steps)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-steps-"));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("numbers each step out of the list's length plus the finish, names from the context, finish hashed last", async () => {
        const lines: string[] = [];
        const released: string[] = [];
        const log = new BuildLog(path.join(dir, "a.log"), "toy", (m) => lines.push(m));
        const out = path.join(dir, "a.out");
        const r = await runBuilder(toyBuilder(released), {}, { work: dir, cache: dir }, log, out, async (f) => fs.readFileSync(f, "utf8"));
        log.close();
        assert.deepEqual(lines.filter((l) => l.endsWith("…")), ["→ toy: [1/4] first…", "→ toy: [2/4] second after first…", "→ toy: [3/4] third…", "→ toy: [4/4] finish…"]);
        assert.equal(r.digest, "first\nsecond\nthird");
        assert.deepEqual(r.output, { pkgManifest: "", base: 3 });
        assert.deepEqual(released, ["released after first,second,third"]);
    });

    it("releases what the steps hold when one fails, and neither runs the rest nor finishes", async () => {
        const lines: string[] = [];
        const released: string[] = [];
        const log = new BuildLog(path.join(dir, "b.log"), "toy", (m) => lines.push(m));
        const out = path.join(dir, "b.out");
        await assert.rejects(runBuilder(toyBuilder(released), { fail: "third" }, { work: dir, cache: dir }, log, out, async () => "never"), /^Error: third broke$/);
        log.close();
        assert.deepEqual(released, ["released after first,second"]);
        assert.equal(fs.existsSync(out), false);
        assert.ok(!lines.some((l) => l.includes("[4/4]")), lines.join("\n"));
    });

    it("every builder names its steps, and its count is what its progress shows", () => {
        // The counts as the builds report them ([n/total]); before the step lists, Packer's said 5 for 4 stages.
        const totals = Object.fromEntries(Object.entries({ rootfs: rootfsBuilder, packer: packerBuilder, pi: piBuilder, iso: isoBuilder })
            .map(([k, b]) => [k, (b.steps as ReadonlyArray<{ name: unknown }>).length + 1]));
        assert.deepEqual(totals, { rootfs: 8, packer: 4, pi: 7, iso: 4 });
        for (const b of [rootfsBuilder, packerBuilder, piBuilder, isoBuilder]) {
            for (const s of b.steps as ReadonlyArray<{ name: unknown }>) assert.ok(typeof s.name === "string" || typeof s.name === "function");
            assert.ok(b.finish.name.length > 0);
        }
    });
});
