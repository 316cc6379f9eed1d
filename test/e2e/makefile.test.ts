// FR-12: the Makefile lists targets and reports dependencies; it never installs anything.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { selectImages } from "../../bin/build-image";
import { imageRows } from "../../bin/list-images";
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
    it("make vm builds every VM image but the node-built one, which it skips with one line; naming that one fails", async () => {
        // Before: make vm stopped at debian-12-minimal-pve and never built debian-12-platform or debian-12-services.
        const vm = selectImages({ kind: "vm" });
        assert.ok(vm.build.includes("debian-12-minimal") && vm.build.includes("debian-12-platform") && vm.build.includes("debian-12-services"), vm.build.join(" "));
        assert.deepEqual(vm.skipped.map((x) => x.name), ["debian-12-minimal-pve"]);
        assert.throws(() => selectImages({ image: "debian-12-minimal-pve" }), /debian-12-minimal-pve builds on the Proxmox node: run it with pulumi up on a lab stack/);
        const r = await execa("make", ["-s", "image-debian-12-minimal-pve"], { cwd: REPO_ROOT, reject: false, all: true });
        assert.notEqual(r.exitCode, 0);
        assert.match(r.all ?? "", /builds on the Proxmox node/);
    });

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

    it("make deps TARGET=qcow2 proves a build namespace can be made here (issue 35), and names the fix when not", async () => {
        const ok = await execa("make", ["-s", "deps", "TARGET=qcow2"], { cwd: REPO_ROOT, reject: false });
        assert.equal(ok.exitCode, 0, ok.all);
        assert.match(ok.stdout, /^build without root:\n {2}ok {7}user namespaces +builds run as root of a namespace: uid 0 → \S+ \(\d+\), 1-65536 → \d+-\d+/m);
        const bin = pathWithout("unshare");
        try {
            const r = await execa("make", ["-s", "deps", "TARGET=qcow2"], { cwd: REPO_ROOT, reject: false, env: { PATH: bin }, extendEnv: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.stdout, /MISSING\s+unshare\s+\(required\)/);
            assert.match(r.stdout, /MISSING {2}user namespaces +\(required\) builds run in a user namespace \(no root needed, none used\), and none can be made here: .*unshare is missing: install util-linux/);
            assert.match(r.stderr, /missing required tools: unshare user-namespaces/);
        } finally {
            fs.rmSync(bin, { recursive: true, force: true });
        }
    });

    it("make list names every image under images/ with its type, builder and artifact, generated from the recipes", async () => {
        const { stdout } = await execa("make", ["-s", "list"], { cwd: REPO_ROOT });
        const rows = imageRows();
        assert.ok(rows.length >= 9);
        for (const r of rows) {
            assert.match(stdout, new RegExp(`^\\s+${r.name}\\s+${r.kind}\\s+${r.builder.replace("/", "\\/")}\\s+${r.format.replace(".", "\\.")}\\s+${r.pass}\\s`, "m"), `make list lacks ${r.name}`);
        }
        for (const target of ["vm", "builder-node", "pi", "iso", "packer-validate", "ansible-collections"]) {
            assert.match(stdout, new RegExp(`^\\s+${target}\\s+\\S`, "m"), `make list lacks the ${target} target`);
        }
        assert.match(stdout, /per type: make builder-node, make iso, make pi, make vm/);
    });

    it("make deps TARGET=pi names a missing tool; TARGET=iso checks the installer files", async () => {
        const bin = pathWithout("qemu-aarch64-static");
        try {
            const r = await execa("make", ["-s", "deps", "TARGET=pi"], { cwd: REPO_ROOT, reject: false, env: { PATH: bin }, extendEnv: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.stdout, /MISSING\s+qemu-aarch64-static\s+\(required\)/);
            assert.match(r.stderr, /missing required tools: qemu-aarch64-static/);
        } finally {
            fs.rmSync(bin, { recursive: true, force: true });
        }
        const iso = await execa("make", ["-s", "deps", "TARGET=iso"], { cwd: REPO_ROOT, reject: false });
        assert.equal(iso.exitCode, 0, iso.all);
        assert.match(iso.stdout, /ok\s+\/usr\/lib\/ISOLINUX\/isolinux\.bin/);
    });

    it("make deps TARGET=builder-node says how VMs will run (FR-11): KVM, or TCG with a warning and an estimate", async () => {
        const r = await execa("make", ["-s", "deps", "TARGET=builder-node"], { cwd: REPO_ROOT, reject: false });
        assert.match(r.stdout, /^virtualisation: cpu flag: .*; nested: .*; \/dev\/kvm: (yes|no)$/m);
        assert.match(r.stdout, /^virtualisation: (qemu runs with KVM \(.+\)|WARNING: qemu runs under TCG, software emulation: .+)$/m);
        if (/TCG/.test(r.stdout)) assert.match(r.stdout, /expect roughly 5-10x longer/);
        const forced = await execa("bash", ["scripts/virt-check.sh", "--json"], { cwd: REPO_ROOT, env: { IMAGE_FACTORY_ACCEL: "tcg" } });
        assert.deepEqual((JSON.parse(forced.stdout) as { accel: string; reason: string }), { ...(JSON.parse(forced.stdout) as object), accel: "tcg", reason: "set by IMAGE_FACTORY_ACCEL" });
    });

    it("make iso builds every ISO through the pipeline and validates it; an unknown image exits 2", async function () {
        this.timeout(10 * 60_000); // a cold build repacks the installer's initrd: over the default 2 minutes on a busy 2-core machine
        const r = await execa("make", ["-s", "iso"], { cwd: REPO_ROOT, reject: false, all: true });
        assert.equal(r.exitCode, 0, r.all);
        assert.match(r.stdout, /^validation of debian-12-installer-iso .*: PASSED$/m);
        assert.match(r.stdout, /^validation of nocloud-seed-iso .*: PASSED$/m);
        assert.match(r.stdout, /^ {2}sha256 [0-9a-f]{64} {2}\d+ bytes/m);
        const bad = await execa("make", ["-s", "image-no-such-image"], { cwd: REPO_ROOT, reject: false, all: true });
        assert.equal(bad.exitCode, 2);
        assert.match(bad.all ?? "", /unknown image 'no-such-image': make list shows the images/);
    });

    it("never installs: no package manager appears in the Makefile or what it runs", () => {
        const texts = ["Makefile", "scripts/deps.sh", "scripts/services.sh"].map((f) => fs.readFileSync(path.join(REPO_ROOT, f), "utf8"));
        for (const text of texts) {
            assert.doesNotMatch(text.replace(/^\s*#.*$/gm, ""), /\b(apt-get|apt|dnf|yum|pacman|brew|npm (ci|install)|go (get|install))\b/);
        }
    });

    it("the seed 002 runbook's targets are listed, and image.local.full refuses without IMAGE_BUILD=1 or without IMAGE and VERSION", async () => {
        const list = (await execa("make", ["-s", "list"], { cwd: REPO_ROOT })).stdout;
        for (const t of ["image.tools.check", "image.local.full", "image.local.validate", "image.local.evidence"]) assert.match(list, new RegExp(`^  ${t.replace(/\./g, "\\.")} +Runbook: `, "m"), t);
        const unguarded = await execa("make", ["-s", "image.local.full", "IMAGE=debian-12-minimal", "VERSION=v2026.01.01"], { cwd: REPO_ROOT, reject: false, all: true, env: { IMAGE_BUILD: "" } });
        assert.equal(unguarded.exitCode, 2);
        assert.match(unguarded.all ?? "", /run it as IMAGE_BUILD=1 make image\.local\.full IMAGE=<image> VERSION=<version>/);
        const incomplete = await execa("make", ["-s", "image.local.full", "IMAGE=debian-12-minimal"], { cwd: REPO_ROOT, reject: false, all: true, env: { IMAGE_BUILD: "1" } });
        assert.equal(incomplete.exitCode, 2);
        assert.match(incomplete.all ?? "", /usage: IMAGE_BUILD=1 make image\.local\.full IMAGE=<image> VERSION=<vN or vYYYY\.MM\.DD>/);
    });

    it("image.local.evidence validates QCOW2_FIXTURE_PATH when QCOW2 is not given, and writes evidence (a missing file fails with the runbook's fix)", async () => {
        const evidence = fs.mkdtempSync(path.join(os.tmpdir(), "if-runbook-ev-"));
        try {
            const r = await execa("make", ["-s", "image.local.evidence", "IMAGE=debian-12-minimal", "VERSION=v2026.01.01", `EVIDENCE_DIR=${evidence}`],
                { cwd: REPO_ROOT, reject: false, all: true, env: { QCOW2_FIXTURE_PATH: "/nonexistent/debian-12-minimal-v1.qcow2" } });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.all ?? "", /\/nonexistent\/debian-12-minimal-v1\.qcow2/, "the fixture path is the one validated");
            assert.match(r.all ?? "", /FAIL +qcow2\.path +no file at .*\n +fix: QCOW2 must point to a local file and the path must be absolute/);
            assert.ok(fs.readdirSync(path.join(evidence, "images", "vm", "debian-12-minimal", "v2026.01.01")).length === 1, "evidence written");
        } finally {
            fs.rmSync(evidence, { recursive: true, force: true });
        }
    });
});
