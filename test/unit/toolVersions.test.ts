// Tool versions are part of every build key, so every plan (every preview, every no-op up) needs them; probing
// runs the tools. The answers are kept per user and probed again only when the executable (or dpkg) changed.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

type Mod = typeof import("../../lib/toolVersions");
const MODULE = require.resolve("../../lib/toolVersions");

/** A fresh copy of the module (its in-process memo empty), as a new `pulumi up` would load it. */
function freshModule(): Mod {
    delete require.cache[MODULE];
    return require(MODULE) as Mod;
}

describe("lib/stages/toolVersions: probes remembered across runs", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-toolv-"));
    const bin = path.join(dir, "bin");
    const calls = path.join(dir, "calls");
    const saved = { PATH: process.env.PATH, IMAGE_FACTORY_CACHE: process.env.IMAGE_FACTORY_CACHE };
    const writeTool = (version: string) => {
        // A stand-in qemu-img that counts its runs.
        fs.writeFileSync(path.join(bin, "qemu-img"), `#!/bin/sh\necho x >> "${calls}"\necho "qemu-img version ${version}"\n`, { mode: 0o755 });
    };
    const runs = () => (fs.existsSync(calls) ? fs.readFileSync(calls, "utf8").split("\n").filter(Boolean).length : 0);

    before(() => {
        fs.mkdirSync(bin);
        writeTool("7.2.0");
        process.env.PATH = `${bin}:${saved.PATH}`;
        process.env.IMAGE_FACTORY_CACHE = path.join(dir, "cache");
    });
    after(() => {
        process.env.PATH = saved.PATH;
        if (saved.IMAGE_FACTORY_CACHE === undefined) delete process.env.IMAGE_FACTORY_CACHE;
        else process.env.IMAGE_FACTORY_CACHE = saved.IMAGE_FACTORY_CACHE;
        freshModule();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("probes once, then a new process reads the answer without running the tool", () => {
        assert.equal(freshModule().toolVersion("qemu-img"), "qemu-img version 7.2.0");
        assert.equal(runs(), 1);
        assert.equal(freshModule().toolVersion("qemu-img"), "qemu-img version 7.2.0");
        assert.equal(runs(), 1, "the second run did not probe");
        const kept = JSON.parse(fs.readFileSync(path.join(dir, "cache", "tool-versions.json"), "utf8")) as Record<string, { version: string }>;
        assert.equal(kept["qemu-img"].version, "qemu-img version 7.2.0");
    });

    it("a replaced executable is probed again and its new version is what the build key gets", () => {
        fs.rmSync(path.join(bin, "qemu-img"));
        writeTool("8.0.1-upgraded");
        assert.deepEqual(freshModule().toolVersions(["qemu-img"]), { "qemu-img": "qemu-img version 8.0.1-upgraded" });
        assert.equal(runs(), 2);
    });

    it("an unreadable cache file only costs a probe", () => {
        fs.writeFileSync(path.join(dir, "cache", "tool-versions.json"), "{not json");
        assert.equal(freshModule().toolVersion("qemu-img"), "qemu-img version 8.0.1-upgraded");
        assert.equal(runs(), 3);
    });
});
