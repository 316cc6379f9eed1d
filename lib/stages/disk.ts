// Turns an image root into a BIOS-bootable raw disk without loop devices or mounts: the ext4 file system is
// made straight from the directory (mkfs.ext4 -d), the MBR partition table is written into a sparse file with
// sfdisk, and GRUB is installed the way grub-bios-setup does it for a core image placed right after the MBR:
// boot.img's code area in sector 0, core.img from sector 1 (its built-in blocklist already points at sector 2).
// Works in containers and unprivileged VMs alike, and keeps the image's own GRUB in charge of later updates.
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { run } from "../exec";
import type { Chroot } from "./chroot";

export const PARTITION_START_SECTOR = 2048; // 1 MiB, leaves the MBR gap for core.img
const MIB = 1024 * 1024;
const MBR_CODE_BYTES = 440; // boot code; the partition table and signature follow and must survive

/** GRUB modules built into core.img; everything else loads from /boot/grub/i386-pc in the image. */
const CORE_MODULES = ["biosdisk", "part_msdos", "ext2", "search", "search_fs_uuid", "normal", "linux", "configfile",
    "serial", "terminal", "echo", "test", "gzio"];

export interface DiskSpec {
    chroot: Chroot;
    /** Output raw disk file. */
    out: string;
    diskSizeMiB: number;
    fsUuid: string;
    fsLabel: string;
    sourceDateEpoch: number;
    kernelCmdline: string;
    log: BuildLog;
}

export function kernelVersions(root: string): string[] {
    return fs.readdirSync(path.join(root, "boot"))
        .filter((f) => f.startsWith("vmlinuz-"))
        .map((f) => f.slice("vmlinuz-".length))
        .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
}

export function grubConfig(fsUuid: string, kernel: string, cmdline: string): string {
    // The image's own update-grub replaces this file on the first kernel upgrade, with /etc/default/grub's settings.
    return [
        "serial --unit=0 --speed=115200",
        "terminal_input serial console",
        "terminal_output serial console",
        "set timeout=1",
        "set default=0",
        `search --no-floppy --fs-uuid --set=root ${fsUuid}`,
        `menuentry "Debian GNU/Linux (${kernel})" {`,
        `  linux /boot/vmlinuz-${kernel} root=UUID=${fsUuid} ${cmdline}`,
        `  initrd /boot/initrd.img-${kernel}`,
        "}",
        "",
    ].join("\n");
}

/**
 * How e2fsprogs (debugfs, dumpe2fs) names the file system that starts `offset` bytes into `file`: "file?offset=N".
 * It reads any "?" in a file name as the start of those I/O options, so such a path is refused, naming the fix.
 */
export function e2fsAt(file: string, offset: number): string {
    if (file.includes("?")) throw new Error(`the build directory ${path.dirname(file)} has a "?" in its path: set factory:workDir to a path without one`);
    return `${file}?offset=${offset}`;
}

// Read as the tree's root (namespace.ts): a build without root cannot list the directories its daemons' users own.
export async function apparentSize(chroot: Chroot): Promise<number> {
    const { stdout } = await chroot.host(["du", "-s", "-x", "--apparent-size", "-B1", chroot.root]);
    return Number(stdout.trim().split(/\s+/)[0]);
}

/** Every path below the root (relative, "/"-led), parents before children, siblings by name. */
export async function treePaths(chroot: Chroot): Promise<string[]> {
    const { stdout } = await chroot.host(["find", chroot.root, "-mindepth", "1", "-printf", "%P\\0"], { quiet: true });
    const paths = stdout.split("\0").filter(Boolean).map((p) => p.split("/"));
    paths.sort((a, b) => {
        for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
        return a.length - b.length;
    });
    return paths.map((p) => `/${p.join("/")}`);
}

/**
 * mkfs.ext4 -d copies each file's ctime, atime and mtime, which say when the build last touched or read it (the
 * boot loader files are written after the tree's cleanup); set all three to SOURCE_DATE_EPOCH in every inode (one debugfs run, well under a second) so that two builds of the same
 * inputs give the same file system bytes.
 */
export async function clampInodeTimes(chroot: Chroot, disk: string, offset: number, epoch: number, log: BuildLog): Promise<void> {
    const lines: string[] = [];
    const clamp = (p: string) => lines.push(`sif "${p}" ctime @${epoch}`, `sif "${p}" atime @${epoch}`, `sif "${p}" mtime @${epoch}`);
    clamp("/");
    clamp("/lost+found");
    for (const r of await treePaths(chroot)) {
        if (/["\n]/.test(r)) throw new Error(`cannot clamp the timestamp of ${JSON.stringify(r)}: unusual characters in a path`);
        clamp(r);
    }
    const cmds = `${disk}.debugfs`;
    fs.writeFileSync(cmds, `${lines.join("\n")}\n`);
    try {
        await run("debugfs", ["-w", "-f", cmds, e2fsAt(disk, offset)], { env: { E2FSPROGS_FAKE_TIME: String(epoch) } });
    } finally {
        fs.rmSync(cmds, { force: true });
    }
    log.line(`disk: clamped atime, ctime and mtime of ${lines.length / 3} inodes to ${epoch}`);
}

export async function assembleBiosDisk(spec: DiskSpec): Promise<void> {
    const { chroot, log } = spec;
    const root = chroot.root;
    const kernels = kernelVersions(root);
    if (kernels.length === 0) throw new Error(`no kernel in ${root}/boot: the package stage must install linux-image-*`);
    const kernel = kernels[kernels.length - 1];

    // GRUB: modules where the prefix points, the config, and a core image made by the image's own grub-mkimage.
    const modSrc = path.join(root, "usr/lib/grub/i386-pc");
    if (!fs.existsSync(path.join(modSrc, "boot.img"))) throw new Error(`GRUB for BIOS is missing in the image (${modSrc}): install grub-pc-bin`);
    const modDst = path.join(root, "boot/grub/i386-pc");
    fs.mkdirSync(modDst, { recursive: true });
    for (const f of fs.readdirSync(modSrc)) {
        if (f.endsWith(".mod") || f.endsWith(".lst")) fs.copyFileSync(path.join(modSrc, f), path.join(modDst, f));
    }
    fs.writeFileSync(path.join(root, "boot/grub/grub.cfg"), grubConfig(spec.fsUuid, kernel, spec.kernelCmdline));
    await chroot.exec(["grub-mkimage", "-O", "i386-pc", "-o", "/tmp/core.img", "-p", "(hd0,msdos1)/boot/grub", ...CORE_MODULES]);
    const coreImg = `${spec.out}.core.img`;
    fs.renameSync(path.join(root, "tmp/core.img"), coreImg);
    const bootImg = fs.readFileSync(path.join(modSrc, "boot.img"));
    const coreSize = fs.statSync(coreImg).size;
    if (coreSize > (PARTITION_START_SECTOR - 1) * 512) throw new Error(`core.img is ${coreSize} bytes and does not fit the MBR gap`);

    // File system: sized to the partition; refuse early when the content cannot fit.
    const partBytes = spec.diskSizeMiB * MIB - PARTITION_START_SECTOR * 512;
    const content = await apparentSize(chroot);
    if (content * 1.15 + 64 * MIB > partBytes) {
        throw new Error(`the image root holds ${Math.ceil(content / MIB)} MiB, too much for a ${spec.diskSizeMiB} MiB disk: ` +
            `raise builder.diskSizeMiB in the recipe to at least ${Math.ceil((content * 1.15 + 64 * MIB) / MIB) + 1}`);
    }
    e2fsAt(spec.out, 0); // refuses a "?" in the path before any work

    // Disk: sparse file, one bootable Linux partition at 1 MiB.
    fs.rmSync(spec.out, { force: true });
    await run("truncate", ["-s", `${spec.diskSizeMiB}M`, spec.out], { log });
    await run("sfdisk", ["-q", "--no-reread", "--no-tell-kernel", spec.out], {
        log, input: `label: dos\nlabel-id: 0x${spec.fsUuid.slice(0, 8)}\nunit: sectors\n${PARTITION_START_SECTOR},,83,*\n`,
    });
    // The file system made in place, at the partition's offset: not in a file of its own and then copied in, which
    // took 10 s of a 33 s build (dd of 2 GiB) for the same bytes (issue 20: both disks compared equal).
    const offset = PARTITION_START_SECTOR * 512;
    // Inside the build namespace, where the tree's owners read as the image's own ids (namespace.ts).
    await chroot.host(["mkfs.ext4", "-q", "-F", "-L", spec.fsLabel, "-U", spec.fsUuid, "-E", `offset=${offset},hash_seed=${spec.fsUuid},root_owner=0:0`,
        "-d", root, spec.out, `${partBytes / 1024}k`], { env: { E2FSPROGS_FAKE_TIME: String(spec.sourceDateEpoch) } });

    await clampInodeTimes(chroot, spec.out, offset, spec.sourceDateEpoch, log);

    const fd = fs.openSync(spec.out, "r+");
    try {
        fs.writeSync(fd, bootImg, 0, MBR_CODE_BYTES, 0);
        fs.writeSync(fd, fs.readFileSync(coreImg), 0, coreSize, 512);
        fs.fsyncSync(fd);
    } finally {
        fs.closeSync(fd);
        fs.rmSync(coreImg, { force: true });
    }
    log.line(`disk: ${spec.diskSizeMiB} MiB, root ext4 ${spec.fsUuid} (${Math.ceil(content / MIB)} MiB of files), kernel ${kernel}, core.img ${coreSize} bytes`);
}

// zstd, not zlib: compressing debian-12-minimal's 2 GiB disk took 12.2 s with zlib and 2.1 s with zstd, output 1.6 %
// smaller, byte-identical run to run. Readers need QEMU >= 5.1 built with zstd (QEMU commit "qcow2: add zstd
// cluster compression", 5.1; iotest 287): Debian 12's QEMU 7.2 (our validation and boot gate) is, and so is every
// Proxmox VE since pve-qemu enabled it (proxmox/pve-qemu debian/rules `--enable-zstd`, commit 3aa5b75, 2022-02-24,
// QEMU 6.2 / PVE 7.2; PVE 8 ships QEMU 8.x). An older host can rewrite it: qemu-img convert -O qcow2 in out.
export const QCOW2_OPTIONS = "compat=1.1,cluster_size=65536,compression_type=zstd";

/** The qcow2 every image ships as: compressed, checked by qemu-img. */
export async function convertQcow2(src: string, srcFormat: string, out: string, log: BuildLog): Promise<void> {
    await run("qemu-img", ["convert", "-q", "-c", "-f", srcFormat, "-O", "qcow2", "-o", QCOW2_OPTIONS, src, out], { log });
    await run("qemu-img", ["check", "-q", out], { log, hint: "qemu-img produced an inconsistent image" });
}

export async function qemuImgInfo(file: string): Promise<{ virtualSize: number; format: string }> {
    const { stdout } = await run("qemu-img", ["info", "--output=json", file]);
    const info = JSON.parse(stdout) as { "virtual-size": number; format: string };
    return { virtualSize: info["virtual-size"], format: info.format };
}
