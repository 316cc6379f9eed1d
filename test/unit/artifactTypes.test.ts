// Issue 11's builders as data and pure functions: recipes of every artifact type, their build keys, the
// generated installer preseed and NoCloud seed, the initrd walker, the Packer variables, the Ansible recap.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { imageRows } from "../../bin/list-images";
import { isolinuxCfg, lateCommandScript, preseed, xorrisoArgs } from "../../lib/stages/iso";
import { initrdMembers, nocloudMetaData, nocloudUserData } from "../../lib/isoFormat";
import { qemuVariables } from "../../lib/stages/packer";
import { planBuild, withBase, type PlanArgs } from "../../lib/stages/plan";
import { playRecap } from "../../lib/stages/rootfs";
import { listImageNames, loadRecipe, recipeSchema } from "../../lib/recipe";
import { formatOf } from "../../lib/validation/validateArtifact";
import { REPO_ROOT } from "../helpers/setup";
import { requestFor } from "../helpers/requests";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";
const DEBIAN = { suite: "bookworm", mirror: "http://mirror.example/debian", securityMirror: "http://mirror.example/debian-security" };
const args = (name: string, over: Partial<PlanArgs> = {}): PlanArgs => ({
    recipe: loadRecipe(name), projectDir: REPO_ROOT, workDir: "/nonexistent/work",
    bootstrapUser: { name: "ansible", authorizedKeys: [KEY] }, domain: "lab.example", debian: DEBIAN, ...over,
});

describe("artifact types (FR-1, FR-2, FR-4, FR-5, FR-8)", () => {
    it("every folder under images/ is a valid recipe, and make list's rows name each with its type", () => {
        const rows = imageRows();
        assert.deepEqual(rows.map((r) => r.name), listImageNames());
        const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
        assert.deepEqual([byName["builder-node"].kind, byName["builder-node"].builder, byName["builder-node"].format], ["builder-node", "packer/qemu", "qcow2"]);
        assert.deepEqual([byName["sdr-pi"].kind, byName["sdr-pi"].format], ["pi", "img.xz"]);
        assert.deepEqual([byName["music-detector-pi"].kind, byName["music-detector-pi"].format], ["pi", "img.xz"]);
        assert.deepEqual([byName["debian-12-installer-iso"].builder, byName["nocloud-seed-iso"].builder], ["iso/debian-installer", "iso/nocloud-seed"]);
        assert.equal(byName["debian-12-minimal-pve"].format, "proxmox-template");
        assert.deepEqual(new Set(rows.map((r) => r.kind)), new Set(["vm", "builder-node", "pi", "iso"]));
    });

    it("refuses recipes whose type and builder disagree, and targets a type cannot have", () => {
        const base = { name: "x", description: "x", pass: 1, targets: ["store"] };
        const problems = (r: unknown) => { const p = recipeSchema.safeParse(r); return p.success ? [] : p.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`); };
        assert.match(problems({ ...base, kind: "pi", builder: { kind: "rootfs" } }).join(), /builder\.kind: a pi image is built by pi, not rootfs/);
        assert.match(problems({ ...base, kind: "iso", builder: { kind: "iso", flavour: "nocloud-seed" }, targets: ["proxmox"] }).join(), /cannot become a Proxmox VM template/);
        assert.match(problems({ ...base, kind: "vm", builder: { kind: "packer", path: "proxmox", base: { image: "a" } }, targets: ["store", "proxmox"] }).join(), /its only target is proxmox/);
        assert.match(problems({ ...base, kind: "vm", builder: { kind: "packer", base: { image: "a" }, diskSize: "8 GB" } }).join(), /builder\.diskSize/);
        assert.deepEqual(problems({ ...base, kind: "iso", builder: { kind: "iso", flavour: "debian-installer" } }), []);
    });

    it("a Packer or Pi build key depends on its base's identity; its file path does not", () => {
        const a = planBuild(args("builder-node", { base: { id: "image:debian-12-minimal", version: "this-stack", identity: "a".repeat(64) } }));
        const b = planBuild(args("builder-node", { base: { id: "image:debian-12-minimal", version: "this-stack", identity: "b".repeat(64) } }));
        assert.notEqual(a.buildKey, b.buildKey);
        const one = withBase(a.request, { path: "/one/base.qcow2", sha256: "1".repeat(64) });
        const two = withBase(a.request, { path: "/two/base.qcow2", sha256: "1".repeat(64) });
        assert.equal(requestFor(one, "packer").packer.base.path, "/one/base.qcow2");
        assert.equal(two.buildKey, one.buildKey);
        assert.equal(a.request.format, "qcow2");
        assert.throws(() => planBuild(args("sdr-pi")), /a pi build needs its base/);
        assert.equal(planBuild(args("sdr-pi", { base: { id: "raspios", version: "1", identity: "c".repeat(64) } })).request.format, "img.xz");
        assert.throws(() => planBuild(args("debian-12-minimal-pve", { base: { id: "image:debian-12-minimal", version: "x", identity: "d".repeat(64) } })), /makes no file/);
    });

    it("ISO keys ignore the workDir; an ISO recipe's volume id and flavour reach the request", () => {
        const a = planBuild(args("nocloud-seed-iso"));
        const b = planBuild(args("nocloud-seed-iso", { workDir: "/elsewhere" }));
        assert.equal(a.buildKey, b.buildKey);
        assert.equal(requestFor(a.request, "iso").iso.volumeId, "cidata");
        assert.equal(requestFor(planBuild(args("debian-12-installer-iso")).request, "iso").iso.volumeId, "IF_DEBIAN12_INSTALL");
    });

    it("the preseed installs unattended from the lab mirror with a locked, key-only bootstrap user", () => {
        const spec = { name: "i", flavour: "debian-installer" as const, volumeId: "I", hostname: "node1", domain: "lab.example", user: { name: "ansible", authorizedKeys: [KEY] },
            mirror: "http://mirror.example:8080/debian/", suite: "bookworm", packages: ["vim"], sourceDateEpoch: 1, buildKey: "k", kernelArgs: "console=ttyS0" };
        const p = preseed(spec);
        assert.match(p, /^d-i mirror\/http\/hostname string mirror\.example:8080$/m);
        assert.match(p, /^d-i mirror\/http\/directory string \/debian$/m);
        assert.match(p, /^d-i passwd\/username string ansible$/m);
        assert.match(p, /^d-i passwd\/user-password-crypted password !$/m);
        assert.match(p, /^d-i passwd\/root-login boolean false$/m);
        assert.match(p, /^d-i pkgsel\/include string openssh-server python3 sudo cloud-init qemu-guest-agent vim$/m);
        const late = /late_command string in-target sh -c 'echo (\S+) \| base64 -d \| sh'/.exec(p)?.[1] ?? "";
        const script = Buffer.from(late, "base64").toString();
        assert.equal(script, lateCommandScript(spec));
        assert.match(script, /PasswordAuthentication no/);
        assert.match(script, /PermitRootLogin prohibit-password/);
        assert.ok(script.includes(KEY));
        assert.match(script, /ansible ALL=\(ALL\) NOPASSWD:ALL/);
        assert.match(isolinuxCfg(spec), /append initrd=\/install\/initrd\.gz auto=true priority=critical console=ttyS0 ---/);
        const boot = xorrisoArgs(spec, "/t", "/o.iso").join(" ");
        assert.match(boot, / -V I .* -b isolinux\/isolinux\.bin -c isolinux\/boot\.cat -no-emul-boot -boot-load-size 4 -boot-info-table -isohybrid-mbr \S+isohdpfx\.bin \/t$/);
        assert.doesNotMatch(xorrisoArgs({ ...spec, flavour: "nocloud-seed", volumeId: "cidata" }, "/t", "/o.iso").join(" "), / -b /, "a seed ISO does not boot");
    });

    it("the NoCloud seed creates the bootstrap user key-only and changes its instance id with the build", () => {
        const ud = nocloudUserData({ hostname: "h", domain: "d.example", user: { name: "ansible", authorizedKeys: [KEY] } });
        assert.match(ud, /^#cloud-config\n/);
        assert.match(ud, /^ssh_pwauth: false$/m);
        assert.match(ud, /^ {4}lock_passwd: true$/m);
        assert.ok(ud.includes(JSON.stringify(KEY)));
        assert.notEqual(nocloudMetaData({ name: "s", hostname: "h", buildKey: "a".repeat(64) }), nocloudMetaData({ name: "s", hostname: "h", buildKey: "b".repeat(64) }));
    });

    it("walks every archive of a concatenated initrd (cpio(1) stops at the first trailer)", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-initrd-"));
        try {
            const archive = async (name: string) => {
                fs.writeFileSync(path.join(dir, name), `content of ${name}\n`);
                const { stdout } = await execa("sh", ["-c", `cd "${dir}" && printf '${name}\\n' | cpio --quiet -o -H newc | gzip -n | base64 -w0`]);
                return Buffer.from(stdout, "base64");
            };
            const both = Buffer.concat([await archive("init"), await archive("preseed.cfg")]);
            assert.deepEqual(initrdMembers(both), ["init", "preseed.cfg"]);
            const { stdout } = await execa("sh", ["-c", `gzip -dc | cpio -t --quiet`], { input: both, encoding: null });
            assert.deepEqual(stdout.toString().trim().split("\n"), ["init"], "cpio(1) sees only the first archive: why the walker exists");
            assert.deepEqual(initrdMembers(zlib.gzipSync(Buffer.alloc(0))), []);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("Packer gets paths and names only: the base by file:// URL and digest, never a secret", () => {
        const vars = qemuVariables({
            name: "n", hostname: "n", domain: "d", imageDir: "/i", template: "/i/image.pkr.hcl", playbook: "/i/playbook.yml", user: { name: "ansible", authorizedKeys: [KEY] },
            base: { id: "b", version: "1", sha256: "e".repeat(64), path: "/cache/base.qcow2" }, diskSize: "8G", memoryMiB: 2048, cpus: 2, vars: {},
            ansibleRolesPath: ["/r"], ansibleCollectionsPath: ["/c"], projectDir: "/p", sourceDateEpoch: 1, buildKey: "k", buildInfo: {},
        }, "/work", "tcg");
        assert.equal(vars.base_image_url, "file:///cache/base.qcow2");
        assert.equal(vars.base_image_sha256, "e".repeat(64));
        assert.equal(vars.accelerator, "tcg");
        assert.equal(vars.output_dir, "/work/output");
        assert.ok(!JSON.stringify(vars).includes(KEY), "keys travel in the seed, not in variables");
    });

    it("reads Ansible's PLAY RECAP (the NFR-2 convergence check) and artifact formats from file names", () => {
        const out = "PLAY RECAP *********\n/work/root                 : ok=12   changed=3    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0\n";
        assert.deepEqual(playRecap(out), { ok: 12, changed: 3, failed: 0 });
        assert.equal(playRecap("no recap"), undefined);
        assert.deepEqual(["a.qcow2", "a.img.xz", "a.iso"].map(formatOf), ["qcow2", "img.xz", "iso"]);
    });

    it("every image playbook passes ansible-playbook --syntax-check", async () => {
        for (const name of listImageNames()) {
            const pb = path.join(REPO_ROOT, "images", name, "playbook.yml");
            if (!fs.existsSync(pb)) continue;
            const r = await execa("ansible-playbook", ["--syntax-check", "-i", "localhost,", pb], { env: { ANSIBLE_ROLES_PATH: path.join(REPO_ROOT, "ansible", "roles") }, reject: false });
            assert.equal(r.exitCode, 0, `${name}: ${r.stdout}\n${r.stderr}`);
        }
    });
});
