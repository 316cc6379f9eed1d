// A build on a machine that lacks one of the commands its builder runs fails before any work, naming the command
// and its Debian package: tried for every command of every builder, with PATH holding all the others.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { osPackages, which } from "../../lib/exec";
import { buildImage } from "../../lib/stages/pipeline";
import { checkCommands, requiredCommands, type BuilderKind } from "../../lib/stages/requiredCommands";

describe("missing tools fail a build before any work (lib/stages/requiredCommands)", () => {
    const builders: Array<[BuilderKind, { playbook?: boolean; installerIso?: boolean }]> = [
        ["rootfs", { playbook: true }], ["packer", { playbook: true }], ["pi", { playbook: true }], ["iso", { installerIso: true }],
    ];
    let bin: string;
    before(() => {
        bin = fs.mkdtempSync(path.join(os.tmpdir(), "if-path-"));
    });
    after(() => fs.rmSync(bin, { recursive: true, force: true }));

    /** A PATH of one directory holding every command but `without`, as links to the real ones. */
    function pathWithout(commands: string[], without: string): string {
        for (const f of fs.readdirSync(bin)) fs.rmSync(path.join(bin, f));
        for (const c of commands) {
            const real = which(c);
            if (c !== without && real) fs.symlinkSync(real, path.join(bin, c));
        }
        return bin;
    }

    for (const [builder, opts] of builders) {
        it(`${builder}: each command it runs, when missing, is named with its package`, () => {
            const commands = requiredCommands(builder, opts);
            assert.doesNotThrow(() => checkCommands(builder, commands), `this machine must have every ${builder} command (run bash scripts/setup.sh)`);
            for (const c of commands) {
                assert.throws(() => checkCommands(`img (${builder} builder)`, commands, pathWithout(commands, c), []), (err: Error) => {
                    assert.match(err.message, new RegExp(`^img \\(${builder} builder\\): a command is missing from PATH: ${c.replace(/[.]/g, "\\.")} \\((Debian package \\S+|bash tools/build\\.sh packer .*)\\); nothing was built`));
                    assert.equal((err as Error & { tool: string }).tool, c);
                    return true;
                });
            }
        });
    }

    it("buildImage checks before it makes the build directory", async () => {
        const work = fs.mkdtempSync(path.join(os.tmpdir(), "if-nobuild-"));
        const saved = process.env.PATH;
        process.env.PATH = pathWithout([], ""); // xorriso lives in /usr/bin, which this PATH leaves out
        try {
            await assert.rejects(buildImage({
                name: "x", buildKey: "k".repeat(64), version: "v2026.01.01", builder: "iso", format: "iso", buildInfo: {},
                buildsDir: path.join(work, "builds"), cacheDir: path.join(work, "cache"),
                iso: { flavour: "nocloud-seed" } as never, // never reached: the check comes first
            }), /x \(iso builder\): a command is missing from PATH: xorriso \(Debian package xorriso\); nothing was built\. Install with apt-get install xorriso/);
            assert.equal(fs.existsSync(path.join(work, "builds")), false, "no build directory for a build that cannot run");
        } finally {
            process.env.PATH = saved;
            fs.rmSync(work, { recursive: true, force: true });
        }
    });

    it("the builder node installs every Debian package the factory needs (scripts/os-packages.txt), so make deps passes on it (NFR-6)", () => {
        const root = path.resolve(__dirname, "..", "..");
        const needed = new Set(osPackages().map((p) => p.pkg));
        assert.ok(needed.size > 20, "os-packages.txt parsed");
        const defaults = parseYaml(fs.readFileSync(path.join(root, "ansible", "roles", "builder_node", "defaults", "main.yml"), "utf8")) as { builder_node_packages: string[] };
        const missing = [...needed].filter((p) => !defaults.builder_node_packages.includes(p));
        assert.deepEqual(missing, [], "add these to builder_node_packages in ansible/roles/builder_node/defaults/main.yml");
    });
});
