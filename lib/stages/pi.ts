// The Raspberry Pi builder (FR-4): a Raspberry Pi OS (Bookworm, arm64) disk image customised offline. The base
// image is copied, its partitions are loop-mounted (root, and the FAT boot partition at /boot/firmware), and the
// arm64 userland runs on this amd64 host through qemu-user-static registered with binfmt_misc, so `useradd`,
// `systemctl enable`, apt and Ansible's chroot connection work as they would on the Pi. Nothing boots.
// The artifact is the flashable raw image compressed with xz (what Raspberry Pi Imager and `xzcat | dd` take).
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { run } from "../exec";
import { Chroot, removeTree } from "./chroot";
import { SSHD_DROPIN, checkSshd, cleanup, configureBootstrapUser, runPlaybook, sshdDropIn, writeManifestAndBuildInfo } from "./rootfs";
import type { Builder } from "./steps";

export interface PiSpec {
    name: string;
    hostname: string;
    domain: string;
    user: { name: string; authorizedKeys: string[] };
    /** The base image, a raw disk (ManagedBaseImage decompresses the .img.xz of Raspberry Pi OS). */
    base: { id: string; version: string; sha256: string; path: string };
    /** Extra space for the root partition, so provisioning has room (Raspberry Pi OS ships its root nearly full). */
    growMiB: number;
    playbook?: string;
    ansibleRolesPath?: string[];
    ansibleCollectionsPath?: string[];
    extraVars?: Record<string, unknown>;
    sourceDateEpoch: number;
    buildKey: string;
    buildInfo: Record<string, unknown>;
}

interface PiContext {
    spec: PiSpec;
    log: BuildLog;
    work: string;
    /** The working copy of the base image, edited in place: the flashable image. */
    image: string;
    root: string;
    chroot: Chroot;
    /** Loop devices attached, the root partition's first. */
    loops: string[];
    bootPart?: BootPartition;
    pkgManifest: string;
}

interface PartitionEntry { node: string; start: number; size: number; type: string }

/** The partition table of a raw image, from sfdisk's JSON (sector units). */
export async function partitions(image: string): Promise<PartitionEntry[]> {
    const { stdout } = await run("sfdisk", ["--json", image], { hint: `${image} has no readable partition table: is it a Raspberry Pi OS .img?` });
    const t = JSON.parse(stdout) as { partitiontable: { partitions: PartitionEntry[] } };
    return t.partitiontable.partitions;
}

/** Raspberry Pi OS layout: partition 1 is the FAT boot partition, partition 2 the ext4 root. */
export function piLayout(parts: PartitionEntry[]): { boot: PartitionEntry; root: PartitionEntry } {
    const boot = parts[0];
    const root = parts[1];
    if (!boot || !root || !["c", "b", "e"].includes(boot.type.toLowerCase()) || root.type !== "83") {
        throw new Error(`not a Raspberry Pi OS layout (expected partition 1 FAT (type c) and partition 2 Linux (type 83), found ${parts.map((p) => p.type).join(", ") || "none"})`);
    }
    return { boot, root };
}

async function attachLoop(image: string, offsetBytes: number, sizeBytes: number, log: BuildLog): Promise<string> {
    const { stdout } = await run("losetup", ["--find", "--show", "--offset", String(offsetBytes), "--sizelimit", String(sizeBytes), image], {
        log, hint: "loop devices are needed to mount the image's partitions: run as root on a host (or container) with /dev/loop-control",
    });
    return stdout.trim();
}

/**
 * The FAT boot partition seen as a directory at /boot/firmware. Loop-mounted when the kernel has vfat; otherwise
 * (containers often lack the module) copied out with mtools, bind-mounted, and written back file by file
 * afterwards (changed and new files with mcopy, removed ones with mdel), so the partition keeps its volume id.
 */
class BootPartition {
    private snapshot?: string;
    private dir?: string;
    mode: "mount" | "mtools" = "mount";

    constructor(private readonly image: string, private readonly offset: number, private readonly work: string, private readonly log: BuildLog) {}

    private get spec(): string {
        return `${this.image}@@${this.offset}`;
    }

    async attach(target: string, loop: string): Promise<void> {
        fs.mkdirSync(target, { recursive: true });
        try {
            await run("mount", ["-t", "vfat", loop, target], { log: this.log });
            return;
        } catch (err) {
            if (!/unknown filesystem type/.test((err as Error).message)) throw err;
            this.log.info("→ boot partition: this kernel cannot mount vfat; editing it with mtools instead (no mount)");
        }
        this.mode = "mtools";
        this.dir = path.join(this.work, "bootfs");
        this.snapshot = path.join(this.work, "bootfs.orig");
        for (const d of [this.dir, this.snapshot]) {
            fs.rmSync(d, { recursive: true, force: true });
            fs.mkdirSync(d, { recursive: true });
            await run("mcopy", ["-s", "-n", "-m", "-i", this.spec, "::/*", d], { log: this.log, env: { MTOOLS_SKIP_CHECK: "1" } });
        }
        await run("mount", ["--bind", this.dir, target], { log: this.log });
    }

    /** Writes back what provisioning changed (mtools mode); a mounted partition needs nothing. */
    async writeBack(epoch: number): Promise<void> {
        if (this.mode !== "mtools" || !this.dir || !this.snapshot) return;
        const env = { MTOOLS_SKIP_CHECK: "1" };
        const walk = (root: string, rel = ""): string[] => fs.readdirSync(path.join(root, rel), { withFileTypes: true })
            .flatMap((e) => (e.isDirectory() ? [`${path.join(rel, e.name)}/`, ...walk(root, path.join(rel, e.name))] : [path.join(rel, e.name)]));
        const now = new Set(walk(this.dir));
        const before = new Set(walk(this.snapshot));
        for (const rel of [...now].sort()) {
            const p = path.join(this.dir, rel);
            if (rel.endsWith("/")) {
                if (!before.has(rel)) await run("mmd", ["-i", this.spec, `::/${rel.slice(0, -1)}`], { log: this.log, env });
                continue;
            }
            if (before.has(rel) && fs.readFileSync(p).equals(fs.readFileSync(path.join(this.snapshot, rel)))) continue;
            fs.utimesSync(p, epoch, epoch);
            await run("mcopy", ["-o", "-m", "-i", this.spec, p, `::/${rel}`], { log: this.log, env });
        }
        for (const rel of [...before].filter((r) => !now.has(r)).sort().reverse()) {
            await run(rel.endsWith("/") ? "mrd" : "mdel", ["-i", this.spec, `::/${rel.replace(/\/$/, "")}`], { log: this.log, env });
        }
    }
}

/** binfmt_misc must run arm64 binaries through qemu-user-static, or nothing inside the image can execute. */
export function assertForeignExec(): void {
    const entry = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
    if (!fs.existsSync(entry) || !fs.readFileSync(entry, "utf8").startsWith("enabled")) {
        throw new Error("arm64 binaries cannot run on this host: qemu-aarch64 is not registered with binfmt_misc; install qemu-user-static and " +
            "binfmt-support, then (as root) mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && update-binfmts --enable qemu-aarch64 " +
            "(bash scripts/setup.sh does both)");
    }
    const flags = /flags: (\S*)/.exec(fs.readFileSync(entry, "utf8"))?.[1] ?? "";
    if (!flags.includes("F")) {
        throw new Error("qemu-aarch64 is registered without the F (fix binary) flag, so a chroot cannot find the interpreter; re-register it with update-binfmts --enable qemu-aarch64 from Debian's qemu-user-static");
    }
}

export const SSH_HOST_KEYS_UNIT = "/etc/systemd/system/image-factory-ssh-host-keys.service";

export function sshHostKeysUnit(): string {
    return [
        "# image-factory: SSH host keys for this device, made on its first boot (the image carries none).",
        "[Unit]",
        "Description=Generate the SSH host keys this device lacks",
        "Before=ssh.service",
        "ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key",
        "",
        "[Service]",
        "Type=oneshot",
        "ExecStart=/usr/bin/ssh-keygen -A",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ].join("\n");
}

async function configurePi(chroot: Chroot, spec: PiSpec): Promise<void> {
    const u = spec.user;
    chroot.write("/etc/hostname", `${spec.hostname}\n`);
    chroot.write("/etc/hosts", `127.0.0.1\tlocalhost\n127.0.1.1\t${spec.hostname}.${spec.domain} ${spec.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`);
    chroot.write(SSHD_DROPIN, sshdDropIn());
    await configureBootstrapUser(chroot, u);
    // SSH on first boot, both ways Raspberry Pi OS knows: the unit enabled, and the boot-partition flag.
    await chroot.exec(["systemctl", "enable", "ssh.service"]);
    chroot.write("/boot/firmware/ssh", "");
    // Host keys are removed at cleanup (every device needs its own). Raspberry Pi OS makes new ones on first boot
    // with raspberrypi-sys-mods' regenerate_ssh_host_keys.service; a base without that package would leave sshd
    // failing its `sshd -t` pre-start check on every boot (the sdr-pi boot proof under qemu caught exactly that).
    // `ssh-keygen -A` only adds missing keys, so the two together are harmless.
    chroot.write(SSH_HOST_KEYS_UNIT, sshHostKeysUnit());
    await chroot.exec(["systemctl", "enable", path.posix.basename(SSH_HOST_KEYS_UNIT)]);
    // Raspberry Pi OS asks for a first user on first boot unless one is configured; ours is, so skip the wizard.
    if (fs.existsSync(chroot.path("/lib/systemd/system/userconfig.service"))) await chroot.exec(["systemctl", "mask", "userconfig.service"]);
    await checkSshd(chroot);
}

export const piBuilder: Builder<PiSpec, PiContext> = {
    async open(spec, dirs, log) {
        if (!spec.base.path || !spec.base.sha256) throw new Error(`${spec.name}: the base image ${spec.base.id} has no file yet`);
        assertForeignExec();
        const root = path.join(dirs.work, "root");
        await removeTree(root, log);
        return { spec, log, work: dirs.work, image: path.join(dirs.work, `${spec.name}.img`), root, chroot: new Chroot(root, log, { namespace: false }), loops: [], pkgManifest: path.join(dirs.work, "pkg-manifest.txt") };
    },
    steps: [
        {
            name: (c) => `copy ${c.spec.base.id} ${c.spec.base.version} and grow its root by ${c.spec.growMiB} MiB`,
            async run({ spec, image, log }) {
                fs.rmSync(image, { force: true });
                await run("cp", ["--sparse=always", spec.base.path, image], { log });
                if (spec.growMiB > 0) {
                    const size = fs.statSync(image).size;
                    fs.truncateSync(image, size + spec.growMiB * 2 ** 20);
                    // Partition 2 ends at the end of the disk, as on every Raspberry Pi OS image.
                    await run("sfdisk", ["--no-reread", "--no-tell-kernel", "-N", "2", image], { input: ", +\n", log });
                }
            },
        },
        {
            name: "mount root and boot partitions (loop devices)",
            async run(c) {
                const { spec, image, root, log, loops, chroot } = c;
                const { boot, root: rootPart } = piLayout(await partitions(image));
                const rootLoop = await attachLoop(image, rootPart.start * 512, rootPart.size * 512, log);
                loops.push(rootLoop);
                if (spec.growMiB > 0) {
                    await run("e2fsck", ["-f", "-p", rootLoop], { log }).catch(() => undefined); // resize2fs insists on a fresh check
                    await run("resize2fs", [rootLoop], { log });
                }
                fs.mkdirSync(root, { recursive: true });
                await run("mount", [rootLoop, root], { log });
                const bootLoop = await attachLoop(image, boot.start * 512, boot.size * 512, log);
                loops.push(bootLoop);
                c.bootPart = new BootPartition(image, boot.start * 512, c.work, log);
                await c.bootPart.attach(path.join(root, "boot/firmware"), bootLoop);
                await chroot.mountSystem();
                // apt inside the image needs name resolution; the image's own resolv.conf comes back afterwards.
                const resolv = chroot.path("/etc/resolv.conf");
                if (fs.existsSync(resolv) || fs.lstatSync(resolv, { throwIfNoEntry: false })) fs.renameSync(resolv, `${resolv}.image-factory`);
                fs.copyFileSync("/etc/resolv.conf", resolv);
            },
        },
        { name: "configure: bootstrap user, sudo, sshd, first boot", run: (c) => configurePi(c.chroot, c.spec) },
        {
            name: (c) => c.spec.playbook ? `ansible-playbook ${path.basename(c.spec.playbook)} (chroot connection, arm64 via qemu-user)` : "ansible (no playbook)",
            async run({ spec, chroot, work, log }) {
                if (spec.playbook) {
                    await runPlaybook({ ...spec, playbook: spec.playbook }, chroot, work, log, { verifyIdempotent: true });
                }
            },
        },
        { name: "package manifest and build info", run: (c) => writeManifestAndBuildInfo(c.chroot, { ...c.spec.buildInfo, base: baseOf(c.spec) }, c.pkgManifest) },
        {
            name: "clean up and unmount",
            async run({ spec, chroot, bootPart, loops, root, log }) {
                await chroot.exec(["apt-get", "clean"]).catch(() => undefined);
                const resolv = chroot.path("/etc/resolv.conf");
                fs.rmSync(resolv, { force: true });
                if (fs.lstatSync(`${resolv}.image-factory`, { throwIfNoEntry: false })) fs.renameSync(`${resolv}.image-factory`, resolv);
                await chroot.unmountAll();
                await bootPart?.writeBack(spec.sourceDateEpoch);
                // cleanup() works on the root only; the boot partition is FAT (2 s timestamps, nothing per machine).
                await run("mount", [loops[0], root], { log });
                await cleanup(chroot, spec.sourceDateEpoch);
                await run("umount", [root], { log });
            },
        },
    ],
    async release({ chroot, loops, root, log }) {
        await chroot.unmountAll().catch(() => undefined);
        for (const l of loops.reverse()) await run("losetup", ["--detach", l], { log }).catch(() => undefined);
        await removeTree(root, log).catch(() => undefined);
    },
    finish: {
        name: "compress the flashable image (xz), sha256",
        run: async (c, out) => {
            await run("sh", ["-c", `xz -T0 -3 -c "${c.image}" > "${out}"`], { log: c.log, hint: "xz failed (Debian package xz-utils; is the disk full?)" });
        },
    },
    output: (c) => ({ pkgManifest: c.pkgManifest, base: baseOf(c.spec), virtualSize: fs.statSync(c.image).size }),
};

function baseOf(spec: PiSpec): { id: string; version: string; sha256: string } {
    return { id: spec.base.id, version: spec.base.version, sha256: spec.base.sha256 };
}
