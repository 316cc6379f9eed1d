// Bootstrap passes (FR-7, issue 20 goal 3) under setMocks: while every pass-1 resource of dvnt is held uncreated,
// the pass-2 and pass-3 images are built, validated and published to the store, OCI and the release; their
// Proxmox templates (what brings them into the lab) register only once pass 1 has finished.
import { strict as assert } from "node:assert";
import { runProgram, stackConfig } from "../helpers/mockProgram";
import { waitFor } from "../helpers/waitFor";

const PASS_1 = /^(debian-12-minimal|builder-node|debian-12-installer-iso|nocloud-seed-iso)-/;

describe("bootstrap passes: a pass waits only for what it depends on (mocks)", function () {
    this.timeout(180_000);

    it("builds pass 2 and 3 while pass 1 is still being made; their templates wait for all of pass 1", async () => {
        const names: string[] = [];
        const held: string[] = [];
        let release!: () => void;
        const pass1 = new Promise<void>((r) => (release = r));
        const run = runProgram("dvnt", stackConfig("dvnt"), {
            hold: (r) => {
                names.push(r.name);
                // Resources, not components: a held component would hold its children by their parent's URN.
                if (!PASS_1.test(r.name) || r.type.startsWith("image-factory:")) return undefined;
                held.push(r.name);
                return pass1;
            },
        });
        const later = ["debian-12-platform", "debian-12-services"];
        const madeWhileHeld = later.flatMap((n) => [`${n}-build`, `${n}-validation`, `${n}-store`, `${n}-oci`, `${n}-release`]);
        const before: string[] = [];
        const heldBefore: string[] = [];
        try {
            await waitFor(`${madeWhileHeld.join(", ")} to register`, () => madeWhileHeld.every((n) => names.some((x) => x.startsWith(n))), 60_000, { pollMs: 50 });
            // Settle: anything that could register without pass 1 has had its chance.
            await new Promise((r) => setTimeout(r, 1000));
            before.push(...names);
            heldBefore.push(...held);
        } finally {
            release(); // a failed wait must not leave the program's registrations hanging
        }
        // The pass-1 builds with no base are held; everything else of pass 1 waits on them (builder-node is built from debian-12-minimal).
        assert.deepEqual(heldBefore.sort(), ["debian-12-installer-iso-build", "debian-12-minimal-build", "nocloud-seed-iso-build"]);
        assert.deepEqual(before.filter((n) => /^debian-12-(platform|services)-proxmox/.test(n)), [],
            "a pass-2/3 Proxmox template registered before pass 1 had finished");
        const done = await run;
        const afterPass1 = done.resources.map((r) => r.name).slice(before.length);
        for (const n of later) {
            assert.ok(afterPass1.includes(`${n}-proxmox-image`) && afterPass1.includes(`${n}-proxmox-template`), `${n}'s template was not made after pass 1: ${afterPass1.join(", ")}`);
        }
        assert.ok(afterPass1.includes("debian-12-minimal-proxmox-image"), "pass 1's own template was made before its build");
    });
});
