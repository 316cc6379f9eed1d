// FR-12: the Makefile lists targets and reports dependencies; it never installs anything.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/setup";

const INSTALLERS = ["npm", "npx", "apt-get", "apt", "dpkg", "go", "pip", "pip3", "sudo"];

/**
 * A PATH holding every command of /usr/bin and /usr/sbin except the ones named; package managers are replaced by
 * stubs that record being called (in <dir>/installer-called) and fail.
 */
function pathWithout(...names: string[]): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-path-"));
    for (const tool of INSTALLERS) {
        fs.writeFileSync(path.join(dir, tool), `#!/bin/sh\necho "${tool} $*" >> "${dir}/installer-called"\nexit 1\n`, { mode: 0o755 });
    }
    for (const src of ["/usr/local/bin", "/usr/bin", "/usr/sbin"]) {
        for (const f of fs.readdirSync(src)) {
            if (names.includes(f) || fs.existsSync(path.join(dir, f))) continue;
            fs.symlinkSync(path.join(src, f), path.join(dir, f));
        }
    }
    return dir;
}

describe("Makefile (FR-12)", () => {
    it("make list prints the targets with their descriptions", async () => {
        const { stdout } = await execa("make", ["-s", "list"], { cwd: REPO_ROOT });
        for (const target of ["deps", "preview", "up", "destroy", "outputs", "services-start", "test"]) {
            assert.match(stdout, new RegExp(`^\\s+${target}\\s+\\S`, "m"), `make list lacks ${target}`);
        }
    });

    it("make deps lists tools with versions and exits 0 when all are present", async () => {
        const r = await execa("make", ["-s", "deps", "TARGET=engine"], { cwd: REPO_ROOT, reject: false });
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.stdout, /ok\s+pulumi\s+v3\.259\.0/);
        assert.match(r.stdout, /ok\s+node\s+v\d+\./);
        assert.match(r.stdout, /ok\s+pulumi-language-nodejs\s+v3\.259\.0\+image-factory/);
    });

    it("make deps exits non-zero and names the tool when a required one is missing", async () => {
        const bin = pathWithout("qemu-img");
        try {
            const r = await execa("make", ["-s", "deps", "TARGET=qcow2"], { cwd: REPO_ROOT, reject: false, env: { PATH: bin }, extendEnv: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.stdout, /MISSING\s+qemu-img\s+\(required\)/);
            assert.match(r.stderr, /missing required tools: qemu-img/);
            assert.match(r.stderr, /"bash scripts\/setup\.sh" sets them up/);
            assert.equal(fs.existsSync(path.join(bin, "installer-called")), false,
                `make deps ran a package manager: ${fs.existsSync(path.join(bin, "installer-called")) ? fs.readFileSync(path.join(bin, "installer-called"), "utf8") : ""}`);
        } finally {
            fs.rmSync(bin, { recursive: true, force: true });
        }
    });

    it("never installs: no package manager appears in the Makefile or what it runs", () => {
        const texts = ["Makefile", "scripts/deps.sh", "scripts/services.sh"].map((f) => fs.readFileSync(path.join(REPO_ROOT, f), "utf8"));
        for (const text of texts) {
            assert.doesNotMatch(text.replace(/^\s*#.*$/gm, ""), /\b(apt-get|apt|dnf|yum|pacman|brew|npm (ci|install)|go (get|install))\b/);
        }
    });
});
