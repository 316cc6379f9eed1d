// Packer (FR-1/FR-2): the pinned Packer and plugins built from Go modules, every template under images/ passing
// `packer validate` with the variables the factory generates, and errors that name the fix.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { packerImages, validateTemplate } from "../../bin/packer-validate";
import { packerEnv } from "../../lib/stages/packer";
import type { PackerBuilder } from "../../lib/recipe";
import { REPO_ROOT } from "../helpers/setup";

const env = packerEnv(REPO_ROOT);

describe("Packer templates (FR-1, FR-2)", function () {
    this.timeout(120_000);

    it("packer is the pinned MPL-2.0 release, and each plugin is installed at the version its go.mod pins", async () => {
        const { stdout } = await execa("packer", ["version"], { env });
        assert.equal(stdout.trim().split("\n")[0], "Packer v1.9.4");
        for (const name of ["qemu", "ansible", "proxmox"]) {
            const mod = fs.readFileSync(path.join(REPO_ROOT, "tools", `packer-plugin-${name}`, "go.mod"), "utf8");
            const version = new RegExp(`github.com/hashicorp/packer-plugin-${name} v(\\S+)`).exec(mod)?.[1];
            const dir = path.join(env.PACKER_PLUGIN_PATH, "github.com", "hashicorp", name);
            const bin = fs.readdirSync(dir).find((f) => !f.endsWith("_SHA256SUM"));
            assert.equal(bin, `packer-plugin-${name}_v${version}_x5.0_linux_amd64`);
            const described = JSON.parse((await execa(path.join(dir, bin as string), ["describe"])).stdout) as { version: string };
            assert.equal(described.version, version, `${name} reports the release it was built from`);
        }
    });

    it("every template passes packer validate with the factory's variables, plugins resolved offline", async () => {
        const images = packerImages();
        assert.deepEqual(images.map((r) => `${r.name}:${(r.builder as PackerBuilder).path}`).sort(), ["builder-node:qemu", "debian-12-minimal-pve:proxmox"]);
        for (const r of images) await validateTemplate(r);
    });

    it("make packer-validate reports each template", async () => {
        const r = await execa("make", ["-s", "packer-validate"], { cwd: REPO_ROOT, reject: false });
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.stdout, /^ok {4}images\/builder-node\/image\.pkr\.hcl \(qemu\)$/m);
        assert.match(r.stdout, /^ok {4}images\/debian-12-minimal-pve\/proxmox\.pkr\.hcl \(proxmox\)$/m);
    });

    it("a template pinning a plugin version that is not installed fails validate, naming the plugin", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-packer-pin-"));
        try {
            fs.writeFileSync(path.join(dir, "t.pkr.hcl"), `packer {\n  required_plugins {\n    qemu = {\n      source  = "github.com/hashicorp/qemu"\n      version = "= 1.1.0"\n    }\n  }\n}\nsource "qemu" "x" {\n  iso_url = "x"\n  iso_checksum = "none"\n}\nbuild {\n  sources = ["source.qemu.x"]\n}\n`);
            const r = await execa("packer", ["validate", "t.pkr.hcl"], { cwd: dir, env, reject: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.stdout + r.stderr, /github\.com\/hashicorp\/qemu/);
            assert.match(r.stdout + r.stderr, /packer init|not installed|Missing plugins/i);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
