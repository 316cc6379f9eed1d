// ISOs (FR-8) built by the real pipeline with xorriso: reproducible to the byte, bootable per their El Torito
// catalog, carrying the seed they are for, and rejected by the validation gate when they are not.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { bootCatalog, initrdMembers, isoExtract, isoFiles } from "../../lib/isoFormat";
import { buildImage, type BuildResult } from "../../lib/stages/pipeline";
import { planBuild } from "../../lib/stages/plan";
import { loadRecipe } from "../../lib/recipe";
import { validateArtifact, validateIso } from "../../lib/validation/validateArtifact";
import { REPO_ROOT } from "../helpers/setup";
import { machineDebian } from "../helpers/debian";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl iso-test";

async function build(name: string, workDir: string): Promise<BuildResult> {
    const plan = planBuild({
        recipe: loadRecipe(name), projectDir: REPO_ROOT, workDir, bootstrapUser: { name: "ansible", authorizedKeys: [KEY] }, domain: "lab.example",
        debian: machineDebian(),
    });
    return buildImage({ ...plan.request, version: "v2026.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: new Date().toISOString() } });
}

describe("IsoImage builds (FR-8)", function () {
    this.timeout(5 * 60_000);
    const dirs = [fs.mkdtempSync(path.join(os.tmpdir(), "if-iso-a-")), fs.mkdtempSync(path.join(os.tmpdir(), "if-iso-b-"))];
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "if-iso-x-"));
    let installer: BuildResult[];
    let seed: BuildResult[];
    before(async () => {
        installer = [await build("debian-12-installer-iso", dirs[0]), await build("debian-12-installer-iso", dirs[1])];
        seed = [await build("nocloud-seed-iso", dirs[0]), await build("nocloud-seed-iso", dirs[1])];
    });
    after(() => [...dirs, scratch].forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

    it("two builds of the same inputs, in different directories at different times, are identical to the byte", () => {
        assert.equal(installer[0].sha256, installer[1].sha256);
        assert.equal(seed[0].sha256, seed[1].sha256);
        assert.notEqual(installer[0].path, installer[1].path);
        assert.equal(installer[0].format, "iso");
        assert.ok(installer[0].size > 40e6, "kernel and initrd are on it");
    });

    it("the installer ISO boots from a BIOS El Torito entry and carries its preseed inside the initrd", async () => {
        const iso = installer[0].path;
        const cat = await bootCatalog(iso);
        assert.equal(cat.catalogPath, "/isolinux/boot.cat");
        assert.deepEqual(cat.entries, [{ platform: "BIOS", emulation: "none", path: "/isolinux/isolinux.bin" }]);
        const files = (await isoFiles(iso)).map((f) => f.path);
        assert.deepEqual(files, ["/install/initrd.gz", "/install/vmlinuz", "/isolinux/isolinux.bin", "/isolinux/isolinux.cfg", "/isolinux/ldlinux.c32", "/preseed.cfg"]);
        await isoExtract(iso, "/install/initrd.gz", path.join(scratch, "initrd.gz"));
        const members = initrdMembers(fs.readFileSync(path.join(scratch, "initrd.gz")));
        assert.equal(members[members.length - 1], "preseed.cfg");
        assert.ok(members.includes("init") || members.some((m) => m.endsWith("bin/sh")), "the installer's own initrd is intact");
        // The isohybrid MBR makes the same file bootable from a USB stick.
        assert.equal(fs.readFileSync(iso).readUInt16LE(510), 0xaa55);
        const info = installer[0].buildInfo as { base: { id: string; version: string } };
        assert.equal(info.base.id, "debian-installer-12-netboot-amd64");
        assert.match(info.base.version, /^\d{8}\+deb12u\d+$/);
    });

    it("the seed ISO is a cidata volume that creates the bootstrap user", async () => {
        const r = await validateIso(seed[0].path, { image: "nocloud-seed-iso", version: "v2026.01.01", bootstrapUser: "ansible" });
        assert.ok(r.passed, JSON.stringify(r.checks));
        await isoExtract(seed[0].path, "/user-data", path.join(scratch, "user-data"));
        assert.ok(fs.readFileSync(path.join(scratch, "user-data"), "utf8").includes(KEY));
    });

    it("both pass the gate; a seed judged as an installer, or a truncated ISO, fails the right check", async () => {
        const expect = { image: "x", version: "v2026.01.01", bootstrapUser: "ansible" };
        assert.ok((await validateArtifact(installer[0].path, expect)).passed);
        const wrong = await validateIso(seed[0].path, { ...expect, flavour: "debian-installer" });
        assert.equal(wrong.passed, false);
        const cat = wrong.checks.find((c) => c.id === "iso.boot-catalog");
        assert.equal(cat?.status, "fail");
        assert.match(cat?.fix ?? "", /-b isolinux\/isolinux\.bin/);
        const cut = path.join(scratch, "cut.iso");
        fs.writeFileSync(cut, fs.readFileSync(seed[0].path).subarray(0, 16 * 2048));
        const truncated = await validateArtifact(cut, expect);
        assert.equal(truncated.passed, false);
        assert.equal(truncated.checks[0].id, "iso.readable");
        const otherUser = await validateIso(seed[0].path, { ...expect, bootstrapUser: "admin" });
        assert.equal(otherUser.checks.find((c) => c.id === "seed.bootstrap-user")?.status, "fail");
    });

    it("xorriso reads the volume id a cloud image looks for", async () => {
        const { stdout } = await execa("xorriso", ["-indev", seed[0].path, "-pvd_info"]);
        assert.match(stdout, /Volume Id\s*:\s*cidata/);
    });
});
