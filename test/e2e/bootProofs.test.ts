// Proofs by booting that are too slow for every CI run (issue 19, part 2). Opt-in:
//   IMAGE_FACTORY_BOOT_PROOFS=1 npx mocha test/e2e/bootProofs.test.ts        (both)
//   IMAGE_FACTORY_BOOT_PROOFS=installer|pi npx mocha test/e2e/bootProofs.test.ts
// Each prints its timings; the closing note of issue 19 quotes them.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePort, guestSshArgs, qemuX86Args } from "../../lib/validation/bootCheck";
import { GuestHangError, shellLine, watchConsole } from "../../lib/guestVm";
import { sha256Hex } from "../../lib/sha256";
import { buildImage } from "../../lib/stages/pipeline";
import { planBuild, withBase } from "../../lib/stages/plan";
import { loadRecipe } from "../../lib/recipe";
import { piBaseImage } from "../helpers/piBase";
import { CACHE_ROOT, REPO_ROOT } from "../helpers/setup";
import { machineDebian } from "../helpers/debian";
import { requestFor } from "../helpers/requests";

const wanted = (process.env.IMAGE_FACTORY_BOOT_PROOFS ?? "").split(",");
const on = (name: string) => wanted.includes("1") || wanted.includes(name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const USER = "ansible";

const sshArgs = (key: string, port: number) => guestSshArgs(key, port, USER);

/**
 * Waits until the bootstrap user logs in with the key; returns the seconds it took. The console is watched: a guest
 * kernel that locks up, stalls or panics fails the wait at once (lib/guestVm.ts), with the console and qemu's command.
 */
async function waitForSsh(key: string, port: number, qemu: execa.ExecaChildProcess, console: string, limitS: number): Promise<number> {
    const started = Date.now();
    const watch = watchConsole(console);
    try {
        while ((Date.now() - started) / 1000 < limitS) {
            if (watch.seen) {
                qemu.kill("SIGKILL");
                throw new GuestHangError("boot proof", watch.seen, "tcg", shellLine(qemu.spawnargs), console, (Date.now() - started) / 1000);
            }
            if (qemu.exitCode !== null) throw new Error(`qemu exited ${qemu.exitCode} before SSH answered; console tail:\n${tail(console)}`);
            const r = await execa("ssh", [...sshArgs(key, port), "true"], { reject: false, timeout: 15_000 });
            if (r.exitCode === 0) return (Date.now() - started) / 1000;
            await Promise.race([sleep(3000), watch.hung]);
        }
    } finally {
        watch.stop();
    }
    throw new Error(`no SSH login as ${USER} within ${limitS} s; console tail:\n${tail(console)}`);
}

function tail(file: string, n = 30): string {
    return fs.existsSync(file) ? fs.readFileSync(file, "latin1").split(/\r?\n/).slice(-n).join("\n") : "(no console log)";
}

async function stop(qemu: execa.ExecaChildProcess, key: string, port: number): Promise<void> {
    await execa("ssh", [...sshArgs(key, port), "sudo", "-n", "poweroff"], { reject: false, timeout: 15_000 });
    await Promise.race([qemu.catch(() => undefined), sleep(60_000)]);
    if (qemu.exitCode === null) qemu.kill("SIGKILL");
    await qemu.catch(() => undefined);
}

/** The in-guest facts both proofs assert: key login, sudo, python3, a locked password, no password SSH. */
async function guestFacts(key: string, port: number): Promise<Record<string, string>> {
    const script = [
        `echo "hostname=$(hostname)"`,
        `echo "sudo=$(sudo -n true && echo ok)"`,
        `echo "python3=$(python3 -c 'print(1+1)')"`,
        `echo "passwd=$(sudo -n passwd -S ${USER} | cut -d' ' -f2)"`,
        `echo "shadow=$(sudo -n getent shadow ${USER} | cut -d: -f2 | cut -c1)"`,
        `echo "pwauth=$(sudo -n sshd -T | awk '$1=="passwordauthentication"{print $2}')"`,
        `echo "arch=$(uname -m)"`,
        `echo "root=$(findmnt -no SOURCE /)"`,
        `echo "system=$(systemctl is-system-running --wait 2>&1)"`,
        `echo "failed=$(systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\\n' ' ')"`,
        `echo "groups=$(id -nG)"`,
        `echo "rtl=$(command -v rtl_test || true)"`,
    ].join("\n");
    const r = await execa("ssh", [...sshArgs(key, port), "sh", "-s"], { input: script, timeout: 120_000 });
    return Object.fromEntries(r.stdout.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

/** The console as a screen would show it: d-i's newt dialogs arrive as cursor-addressed text on the serial line. */
function screenText(file: string): string {
    if (!fs.existsSync(file)) return "";
    const raw = fs.readFileSync(file, "latin1").slice(-8000);
    // Escape sequences and the dialog's line-drawing characters (lqkxmjtu in the VT100 graphics set) go.
    return raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, " ").replace(/\x1b[()][0-9A-B]/g, "").replace(/[lqkxmjtu]{3,}/g, " ").replace(/ x(?= )/g, " ").replace(/\s+/g, " ");
}

/** Whether the mirror serves a udeb the installer downloads (from its debian-installer index). */
async function udebServed(mirror: string, pkg: string): Promise<{ ok: boolean; status: number; file: string }> {
    const index = await execa("sh", ["-c", `curl -fsS "${mirror}/dists/bookworm/main/debian-installer/binary-amd64/Packages.xz" | xz -dc`], { maxBuffer: 64 * 2 ** 20 });
    const file = index.stdout.split("\n\n").find((p) => p.startsWith(`Package: ${pkg}\n`))?.match(/^Filename: (.*)$/m)?.[1] ?? `${pkg} (not in the index)`;
    const head = await execa("curl", ["-s", "-o", "/dev/null", "-I", "-w", "%{http_code}", `${mirror}/${file}`], { reject: false });
    const status = Number(head.stdout);
    return { ok: status === 200, status, file };
}

/** A password login must be refused by sshd itself (only publickey offered). */
async function passwordRefused(port: number): Promise<string> {
    const r = await execa("ssh", ["-p", String(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no", `${USER}@127.0.0.1`, "true"], { reject: false, timeout: 30_000 });
    return r.stderr;
}

describe("boot proofs (opt-in: IMAGE_FACTORY_BOOT_PROOFS=1)", function () {
    this.timeout(3 * 3600_000);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "if-boot-proof-"));
    const key = path.join(work, "id_ed25519");
    before(async function () {
        if (!on("installer") && !on("pi")) this.skip();
        await execa("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "boot-proof", "-f", key]);
    });
    after(() => fs.rmSync(work, { recursive: true, force: true }));

    it("the installer ISO installs Debian unattended from this machine's mirror, reboots into it, and the bootstrap user logs in with its key only", async function () {
        if (!on("installer")) this.skip();
        const t0 = Date.now();
        // The netboot installer fetches most of itself (udebs) from the mirror at install time: a mirror that
        // serves .debs but not udebs (a partial or proxying one) fails mid-install, so it is checked first.
        const mirror = machineDebian().mirror.replace(/\/+$/, "");
        const udeb = await udebServed(mirror, "anna");
        assert.ok(udeb.ok, `the mirror ${mirror} does not serve the installer's udebs (${udeb.file}: HTTP ${udeb.status}); the unattended install needs a full Debian mirror (factory:debian.mirror / the machine's APT sources)`);
        const plan = planBuild({
            recipe: loadRecipe("debian-12-installer-iso"), projectDir: REPO_ROOT, workDir: work, domain: "lab.example",
            bootstrapUser: { name: USER, authorizedKeys: [fs.readFileSync(`${key}.pub`, "utf8").trim()] }, debian: machineDebian(),
        });
        const iso = await buildImage({ ...plan.request, version: "v2026.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: new Date().toISOString() } });
        const disk = path.join(work, "installed.qcow2");
        await execa("qemu-img", ["create", "-q", "-f", "qcow2", disk, "8G"]);
        const accel = process.env.IMAGE_FACTORY_BOOT_PROOF_ACCEL ?? "tcg";
        const installConsole = path.join(work, "install-console.log");
        // -no-reboot: the installer's final reboot ends qemu, which is how we know the install finished.
        const installSeconds = () => (Date.now() - t0) / 1000;
        const install = execa("qemu-system-x86_64", qemuX86Args({ accel, consoleLog: installConsole,
            extra: ["-no-reboot", "-cdrom", iso.path, "-boot", "once=d", "-drive", `file=${disk},if=virtio,format=qcow2`] }), { reject: false, all: true });
        // A question on the console ("[!!] <title>") means the preseed left a gap or the installer hit an error
        // it asks about: stop there and name it, rather than wait for the time limit.
        let question: string | undefined;
        const deadline = Date.now() + 150 * 60_000;
        const watch = watchConsole(installConsole);
        while (install.exitCode === null && Date.now() < deadline && question === undefined && !watch.seen) {
            await Promise.race([sleep(5000), watch.hung]);
            question = screenText(installConsole).match(/\[!!?\] (.{0,240})/)?.[0];
        }
        watch.stop();
        if (install.exitCode === null) install.kill("SIGKILL");
        const installed = await install;
        if (watch.seen) throw new GuestHangError("unattended install", watch.seen, accel, shellLine(install.spawnargs), installConsole, installSeconds());
        if (question !== undefined) assert.fail(`the installer stopped at a question: ${question}`);
        if (Date.now() >= deadline) assert.fail(`the unattended install did not finish within 150 min; console tail:\n${tail(installConsole)}`);
        const installS = installSeconds();
        assert.equal(installed.exitCode, 0, `qemu: ${installed.all}\n${tail(installConsole)}`);

        const port = await freePort();
        const bootConsole = path.join(work, "boot-console.log");
        const t1 = Date.now();
        const boot = execa("qemu-system-x86_64", qemuX86Args({ accel, consoleLog: bootConsole, sshPort: port,
            extra: ["-drive", `file=${disk},if=virtio,format=qcow2`] }), { reject: false, all: true });
        try {
            const sshS = await waitForSsh(key, port, boot, bootConsole, 900);
            const facts = await guestFacts(key, port);
            const refused = await passwordRefused(port);
            console.log(`      installer proof (${accel.toUpperCase()}): ISO built + unattended install ${installS.toFixed(0)} s; reboot to SSH ${sshS.toFixed(0)} s; total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
            console.log(`      guest: ${JSON.stringify(facts)}; password login: ${refused.trim()}`);
            assert.equal(facts.hostname, requestFor(plan.request, "iso").iso.hostname);
            assert.equal(facts.sudo, "ok");
            assert.equal(facts.python3, "2");
            assert.equal(facts.passwd, "L", "the preseed's crypted password '!' leaves the account locked");
            assert.equal(facts.shadow, "!");
            assert.equal(facts.pwauth, "no");
            assert.match(refused, /Permission denied \(publickey\)/);
        } finally {
            await stop(boot, key, port);
        }
    });

    it("sdr-pi boots under qemu-system-aarch64 (virt, the image's root file system) to SSH as the bootstrap user", async function () {
        if (!on("pi")) this.skip();
        try {
            await execa("qemu-system-aarch64", ["--version"]);
        } catch {
            assert.fail("qemu-system-aarch64 is missing: apt-get install qemu-system-arm (the proof is opt-in, so setup does not install it)");
        }
        const t0 = Date.now();
        // raspi3b would need Raspberry Pi OS's own kernel and DTB, which our Pi base (a Raspberry Pi OS-shaped
        // Debian arm64 root, test/fixtures/pi-base) does not have, and its USB network is too slow under TCG: `virt`
        // with a stand-in kernel boots the image's own root file system, init, sshd and users.
        const script = path.join(REPO_ROOT, "test/fixtures/pi-virt/build.sh");
        const virt = path.join(CACHE_ROOT, "fixtures", `pi-virt-${sha256Hex(fs.readFileSync(script)).slice(0, 16)}`);
        if (!fs.existsSync(path.join(virt, "initrd.gz"))) await execa("bash", [script, virt, machineDebian().mirror, path.join(CACHE_ROOT, "pi-virt-debs")], { stdio: "inherit" });
        const base = await piBaseImage();
        const plan = planBuild({
            recipe: loadRecipe("sdr-pi"), projectDir: REPO_ROOT, workDir: work, domain: "lab.example",
            bootstrapUser: { name: USER, authorizedKeys: [fs.readFileSync(`${key}.pub`, "utf8").trim()] }, debian: machineDebian(),
            base: { id: "raspios-fixture", version: "test", identity: base.sha256 },
        });
        const built = await buildImage({ ...withBase(plan.request, base), version: "v2026.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: new Date().toISOString() } });
        const buildS = (Date.now() - t0) / 1000;
        const raw = path.join(work, "sdr-pi.img");
        await execa("sh", ["-c", `xz -dc "${built.path}" > "${raw}"`]);
        const port = await freePort();
        const bootConsole = path.join(work, "pi-console.log");
        const t1 = Date.now();
        // snapshot=on: the guest's writes go to a temporary overlay, the image stays as built.
        // The Pi's own CPU model; an entropy device as every VM of ours gets (lib/guestVm.ts says why).
        const boot = execa("qemu-system-aarch64", ["-machine", "virt", "-cpu", "cortex-a72", "-accel", "tcg", "-m", "1024", "-smp", "2",
            "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
            "-display", "none", "-monitor", "none", "-serial", `file:${bootConsole}`,
            "-kernel", path.join(virt, "vmlinuz"), "-initrd", path.join(virt, "initrd.gz"), "-append", "console=ttyAMA0 rootwait",
            "-drive", `file=${raw},if=virtio,format=raw,snapshot=on`,
            "-netdev", `user,id=n0,hostfwd=tcp:127.0.0.1:${port}-:22`, "-device", "virtio-net-pci,netdev=n0"], { reject: false, all: true });
        try {
            const sshS = await waitForSsh(key, port, boot, bootConsole, 1200);
            const facts = await guestFacts(key, port);
            const refused = await passwordRefused(port);
            console.log(`      pi proof (virt, TCG): build ${buildS.toFixed(0)} s; boot to SSH ${sshS.toFixed(0)} s; total ${((Date.now() - t0) / 1000).toFixed(0)} s (boot ${((Date.now() - t1) / 1000).toFixed(0)} s)`);
            console.log(`      guest: ${JSON.stringify(facts)}; password login: ${refused.trim()}`);
            assert.equal(facts.arch, "aarch64");
            assert.equal(facts.hostname, "sdr-pi");
            assert.equal(facts.sudo, "ok");
            assert.equal(facts.python3, "2");
            assert.equal(facts.pwauth, "no");
            assert.match(refused, /Permission denied \(publickey\)/);
            assert.ok(facts.groups.split(" ").includes("plugdev"), "the sdr role put the bootstrap user in plugdev");
        } finally {
            await stop(boot, key, port);
        }
    });
});
