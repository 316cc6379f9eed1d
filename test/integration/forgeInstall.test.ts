// NFR-6, the forge rebuilds itself: the builder-node image's `forge-install` (ansible/roles/builder_node/files) run
// on this machine against a kit laid out as the image lays it out (only the tools the role's defaults list, npm, the
// Packer and Proxmox VE plugins), a git bundle of HEAD and the npm cache setup filled, offline. It must leave a
// checkout at the commit whose `make deps` passes and whose `pulumi preview --stack local` runs, with nothing from
// this checkout's own .tools or node_modules on its PATH. test/e2e/forgeRebuild.test.ts does the same inside a
// booted builder-node image (opt-in: it builds the full node under TCG).
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { CACHE_ROOT, REPO_ROOT } from "../helpers/setup";

const SCRIPT = path.join(REPO_ROOT, "ansible", "roles", "builder_node", "files", "forge-install.sh");
const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The kit as the builder_node role unpacks it under /opt/image-factory, made of links into this checkout's .tools. */
export function makeForgeKit(dir: string): void {
    const defaults = parseYaml(fs.readFileSync(path.join(REPO_ROOT, "ansible", "roles", "builder_node", "defaults", "main.yml"), "utf8")) as { builder_node_tools: string[] };
    fs.mkdirSync(path.join(dir, "bin"), { recursive: true });
    for (const tool of defaults.builder_node_tools) fs.symlinkSync(path.join(REPO_ROOT, ".tools", "bin", tool), path.join(dir, "bin", tool));
    fs.symlinkSync(process.execPath, path.join(dir, "bin", "node"));
    const npmDir = path.dirname(path.dirname(fs.realpathSync(execa.sync("sh", ["-c", "command -v npm"]).stdout.trim())));
    fs.symlinkSync(npmDir, path.join(dir, "npm"));
    fs.symlinkSync("../npm/bin/npm-cli.js", path.join(dir, "bin", "npm"));
    fs.symlinkSync(path.join(REPO_ROOT, ".tools", "packer-plugins"), path.join(dir, "packer-plugins"));
    fs.mkdirSync(path.join(dir, "plugins"));
    fs.symlinkSync(path.join(REPO_ROOT, ".tools", "plugins", "pulumi-resource-proxmoxve"), path.join(dir, "plugins", "pulumi-resource-proxmoxve"));
}

describe("forge-install puts the factory on a builder node (NFR-6)", function () {
    this.timeout(10 * 60_000);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-forge-"));
    const kit = path.join(tmp, "kit");
    const srv = path.join(tmp, "srv");
    const bundle = path.join(tmp, "factory.bundle");
    const checkout = path.join(srv, "image-factory", "src");
    // safe.directory: whoever runs the tests may not own the checkout (CI's build user), and git then refuses it.
    const git = (args: string[]) => execa("git", ["-c", `safe.directory=${REPO_ROOT}`, ...args], { cwd: REPO_ROOT });
    let commit: string;
    // A login on the node: the system's PATH and the kit's, none of this checkout's settings.
    const env = { PATH: `${path.join(kit, "bin")}:${SYSTEM_PATH}`, HOME: path.join(tmp, "home"), IMAGE_FACTORY_KIT: kit, IMAGE_FACTORY_SRV: srv, LANG: "C.UTF-8" };
    const forgeInstall = (args: string[], extra: Record<string, string> = {}) =>
        execa("bash", [SCRIPT, ...args], { env: { ...env, ...extra }, extendEnv: false, reject: false, all: true });
    let first: execa.ExecaReturnValue;

    // The npm cache as it comes from a CD or a stick: read-only.
    const stick = path.join(tmp, "stick-npm");

    before(async () => {
        fs.mkdirSync(env.HOME);
        makeForgeKit(kit);
        commit = (await git(["rev-parse", "HEAD"])).stdout.trim();
        await git(["bundle", "create", bundle, "HEAD"]);
        fs.cpSync(path.join(CACHE_ROOT, "npm"), stick, { recursive: true });
        await execa("chmod", ["-R", "a-w", stick]);
        first = await forgeInstall(["--npm-cache", stick, bundle, commit]);
    });
    after(() => execa.sync("chmod", ["-R", "u+w", stick]));
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it("checks the commit out of a bundle, links the image's tools, installs the npm packages offline, and make deps passes", () => {
        assert.equal(first.exitCode, 0, first.all);
        assert.match(first.all ?? "", new RegExp(`forge-install: checkout at ${commit}`));
        assert.match(first.all ?? "", /npm packages from .* \(offline\)/);
        assert.match(first.all ?? "", /^deps: all required tools present$/m);
        assert.doesNotMatch(first.all ?? "", /warning: this checkout pins Pulumi/, "the kit's engine is the one this commit pins");
        assert.equal(execa.sync("git", ["rev-parse", "HEAD"], { cwd: checkout }).stdout.trim(), commit);
        assert.equal(fs.readlinkSync(path.join(checkout, ".tools", "bin")), path.join(kit, "bin"));
        assert.ok(fs.existsSync(path.join(checkout, "node_modules", "@pulumi", "pulumi", "package.json")));
        // npm writes its cache's index as it reads: a read-only copy fails as ENOTCACHED for an operator who is not root
        const npmCache = path.join(srv, "image-factory", "cache", "npm", "_cacache");
        const readOnly = fs.readdirSync(npmCache, { recursive: true }).map((f) => path.join(npmCache, String(f))).filter((f) => (fs.statSync(f).mode & 0o200) === 0);
        assert.deepEqual(readOnly.slice(0, 3), [], "the installed npm cache is the user's to write");
        assert.ok(fs.existsSync(path.join(checkout, ".cache", "local-ssh", "id_ed25519.pub")), "the local stack's key was made");
        assert.ok(fs.readdirSync(path.join(checkout, ".cache", "pulumi-home", "plugins")).some((p) => p.startsWith("resource-proxmoxve-v")), "the Proxmox VE plugin is installed from the kit");
    });

    it("pulumi preview --stack local runs in the new checkout", async () => {
        const r = await execa("bash", ["-c", "source scripts/env.sh && pulumi stack select --create local >/dev/null && pulumi preview --stack local"],
            { cwd: checkout, env: { ...env, PULUMI_CONFIG_PASSPHRASE: "image-factory-local" }, extendEnv: false, reject: false, all: true });
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.all ?? "", /image-factory:image:Image\s+debian-12-minimal/);
        assert.match(r.all ?? "", /Resources:\s+\+ \d+ to create/);
    });

    it("runs again over its own checkout and converges", async () => {
        const r = await forgeInstall(["--npm-cache", stick, bundle, commit]);
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.all ?? "", /forge-install: fetching /);
        assert.match(r.all ?? "", new RegExp(`forge-install: checkout at ${commit}`));
        assert.doesNotMatch(r.all ?? "", /setup: npm ci/, "an unchanged lockfile installs nothing again");
    });

    it("refuses a commit the source does not hold, naming how to make a bundle that does", async () => {
        const r = await forgeInstall([bundle, "0".repeat(40)]);
        assert.equal(r.exitCode, 1);
        assert.match(r.all ?? "", /forge-install: 0{40} is not a commit of .*factory\.bundle \(a bundle must hold it: git bundle create f\.bundle --all\)/);
    });

    it("refuses to run where the image's kit is missing, and a --npm-cache that is not there", async () => {
        const noKit = await forgeInstall([bundle, commit], { IMAGE_FACTORY_KIT: path.join(tmp, "nothing") });
        assert.equal(noKit.exitCode, 1);
        assert.match(noKit.all ?? "", /does not hold the forge kit: .* run bash scripts\/setup\.sh instead/);
        const noCache = await forgeInstall(["--npm-cache", path.join(tmp, "nowhere"), bundle, commit]);
        assert.equal(noCache.exitCode, 1);
        assert.match(noCache.all ?? "", /--npm-cache .*nowhere is not a directory/);
    });
});
