// The Raspberry Pi builder (FR-4): a Raspberry Pi OS (Bookworm, arm64) disk image customised offline, without root
// and without a mount or loop device on the host (issue 35). The base image is copied; its ext4 root is unpacked into
// a directory (fuse2fs, read-only, inside a build namespace) and its FAT boot partition into that tree's
// /boot/firmware (mtools). The arm64 userland then runs on this amd64 host through qemu-user-static registered with
// binfmt_misc, in the same build namespace as every image root's commands (chroot.ts), so `useradd`,
// `systemctl enable`, apt and Ansible's chroot connection work as they would on the Pi. Afterwards the boot partition
// gets the changed files back (mtools) and the root partition is made again from the tree (mkfs.ext4 -d, the base's
// UUID, label, block and inode size and features). Nothing boots. The artifact is the flashable raw image
// compressed with xz (what Raspberry Pi Imager and `xzcat | dd` take).
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { run } from "../exec";
import { Chroot, removeTree } from "./chroot";
import { apparentSize, clampInodeTimes, e2fsAt } from "./disk";
import { nsRun } from "./namespace";
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
    bootPart?: BootPartition;
    /** The root partition (bytes) and the file system the base had there, to be made again from the tree. */
    rootPart?: { offset: number; size: number; shape: Ext4Shape };
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

/** What the root file system is made again with: the base's identity and format, so the image stays the base's. */
export interface Ext4Shape { uuid: string; label: string; blockSize: number; inodeSize: number; features: string[] }

/** States, not features: mke2fs refuses them, and a fresh file system has none of them. */
const EXT4_STATE_FLAGS = new Set(["needs_recovery", "orphan_present", "journal_dev", "read-only"]);

/** The shape of an ext4 file system from `dumpe2fs -h`. */
export function parseExt4Shape(dumpe2fs: string): Ext4Shape {
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(dumpe2fs)?.[1].trim();
    const uuid = field("Filesystem UUID");
    const blockSize = Number(field("Block size"));
    const inodeSize = Number(field("Inode size"));
    const features = (field("Filesystem features") ?? "").split(/\s+/).filter((f) => f && !EXT4_STATE_FLAGS.has(f));
    if (!uuid || !blockSize || !inodeSize || !features.length) throw new Error(`not an ext4 superblock (dumpe2fs said: ${dumpe2fs.slice(0, 200)})`);
    const label = field("Filesystem volume name");
    return { uuid, label: !label || label === "<none>" ? "" : label, blockSize, inodeSize, features };
}

// fuse2fs (built with libfuse 2) cannot hand POSIX ACLs through: tar's --acls only warns. They come from debugfs below.
const TAR_KEEP = ["--numeric-owner", "--xattrs", "--xattrs-include=security.*", "--xattrs-include=user.*"];

/**
 * POSIX ACLs (e.g. /var/log/journal's for the adm group): listed through the mount (listxattr works, getxattr does
 * not), read from the file system with debugfs (which hands them in the kernel's format) and set on the tree.
 */
const COPY_ACLS = `import os, subprocess, sys, tempfile
mnt, root, fs = sys.argv[1:4]
acls = []
for d, dirs, files in os.walk(mnt):
    for x in dirs + files:
        p = os.path.join(d, x)
        rel = os.path.relpath(p, mnt)
        if not os.path.lexists(os.path.join(root, rel)):
            continue
        for name in os.listxattr(p, follow_symlinks=False):
            if name.startswith("system.posix_acl_"):
                if '"' in rel or "\\n" in rel:
                    sys.exit(f"cannot copy the ACL of {rel!r}: unusual characters in a path")
                acls.append((rel, name))
with tempfile.TemporaryDirectory() as tmp:
    for i, (rel, name) in enumerate(acls):
        out = os.path.join(tmp, str(i))
        subprocess.run(["debugfs", "-R", f'ea_get -f {out} "/{rel}" {name}', fs], check=True, capture_output=True)
        with open(out, "rb") as f:
            os.setxattr(os.path.join(root, rel), name, f.read(), follow_symlinks=False)
print(f"{len(acls)} ACLs copied")
`;

/**
 * Copies the ext4 file system at offset in image into root (an empty directory), as the build namespace's root, so
 * owners, modes, hard links, capabilities and ACLs stay what they were. fuse2fs mounts it read-only inside the
 * namespace (a user namespace may mount FUSE); the mount ends with the command. Device nodes cannot be made in a user
 * namespace, by root or anyone: those in /dev (a debootstrap leftover; the booted system mounts devtmpfs over /dev)
 * are left out, any elsewhere stop the build.
 */
export async function unpackRoot(image: string, offset: number, root: string, log?: BuildLog): Promise<void> {
    const mnt = `${root}.base`;
    fs.mkdirSync(mnt, { recursive: true });
    try {
        await nsRun(["bash", "-c", `set -eo pipefail
            img=$1 off=$2 mnt=$3 root=$4 acls=$5 fs=$6; shift 6
            fuse2fs -o ro,fakeroot,offset="$off" "$img" "$mnt"
            trap 'umount "$mnt"' EXIT
            odd=$(find "$mnt" -xdev \\( -type b -o -type c \\) ! -path "$mnt/dev/*" | head -n 3)
            if [ -n "$odd" ]; then echo "device nodes outside /dev, which no build without CAP_MKNOD can make: $odd" >&2; exit 3; fi
            tar -C "$mnt" "$@" --exclude=./lost+found --exclude='./dev/*' -cf - . | tar -C "$root" "$@" -xpf -
            python3 -c "$acls" "$mnt" "$root" "$fs"`,
        "bash", image, String(offset), mnt, root, COPY_ACLS, e2fsAt(image, offset), ...TAR_KEEP], { log, hint: "fuse2fs (Debian package fuse2fs) reads the base's root file system: /dev/fuse must be there and usable" });
    } finally {
        fs.rmSync(mnt, { recursive: true, force: true });
    }
}

/**
 * The FAT boot partition as the tree's /boot/firmware: copied out with mtools (FAT has no owners, and needs no mount),
 * and written back file by file afterwards (changed and new files with mcopy, removed ones with mdel), so the partition
 * keeps its volume id and everything provisioning did not touch.
 */
class BootPartition {
    constructor(private readonly image: string, private readonly offset: number, private readonly dir: string,
        private readonly snapshot: string, private readonly log: BuildLog) {}

    private get spec(): string {
        return `${this.image}@@${this.offset}`;
    }

    async unpack(): Promise<void> {
        for (const d of [this.dir, this.snapshot]) {
            fs.mkdirSync(d, { recursive: true });
            await run("mcopy", ["-s", "-n", "-m", "-i", this.spec, "::/*", d], { log: this.log, env: { MTOOLS_SKIP_CHECK: "1" } });
        }
    }

    /** Writes back what provisioning changed. */
    async writeBack(epoch: number): Promise<void> {
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

const MIB = 2 ** 20;

export const piBuilder: Builder<PiSpec, PiContext> = {
    async open(spec, dirs, log) {
        if (!spec.base.path || !spec.base.sha256) throw new Error(`${spec.name}: the base image ${spec.base.id} has no file yet`);
        assertForeignExec();
        const root = path.join(dirs.work, "root");
        await removeTree(root, log);
        return { spec, log, work: dirs.work, image: path.join(dirs.work, `${spec.name}.img`), root, chroot: new Chroot(root, log), pkgManifest: path.join(dirs.work, "pkg-manifest.txt") };
    },
    steps: [
        {
            name: (c) => `copy ${c.spec.base.id} ${c.spec.base.version} and grow its root partition by ${c.spec.growMiB} MiB`,
            async run({ spec, image, log }) {
                fs.rmSync(image, { force: true });
                await run("cp", ["--sparse=always", spec.base.path, image], { log });
                if (spec.growMiB > 0) {
                    const size = fs.statSync(image).size;
                    fs.truncateSync(image, size + spec.growMiB * MIB);
                    // Partition 2 ends at the end of the disk, as on every Raspberry Pi OS image. Its file system is made
                    // again at the new size when the tree goes back in.
                    await run("sfdisk", ["--no-reread", "--no-tell-kernel", "-N", "2", image], { input: ", +\n", log });
                }
            },
        },
        {
            name: "unpack the root (fuse2fs, read-only) and boot (mtools) partitions into a tree",
            async run(c) {
                const { image, root, log, chroot } = c;
                const { boot, root: rootPart } = piLayout(await partitions(image));
                const offset = rootPart.start * 512;
                const { stdout } = await run("dumpe2fs", ["-h", e2fsAt(image, offset)], { hint: "partition 2 of the base image holds no ext4 file system" });
                c.rootPart = { offset, size: rootPart.size * 512, shape: parseExt4Shape(stdout) };
                fs.mkdirSync(root, { recursive: true });
                await unpackRoot(image, offset, root, log);
                c.bootPart = new BootPartition(image, boot.start * 512, chroot.path("/boot/firmware"), path.join(c.work, "bootfs.orig"), log);
                await c.bootPart.unpack();
                await chroot.mountSystem();
                // apt inside the image needs name resolution; the image's own resolv.conf comes back afterwards.
                const resolv = chroot.path("/etc/resolv.conf");
                if (fs.lstatSync(resolv, { throwIfNoEntry: false })) fs.renameSync(resolv, `${resolv}.image-factory`);
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
            name: "clean up; write the boot partition back (mtools) and make the root partition from the tree (mkfs.ext4 -d)",
            async run({ spec, chroot, bootPart, rootPart, image, log }) {
                if (!bootPart || !rootPart) throw new Error("the partitions were not unpacked");
                await chroot.exec(["apt-get", "clean"]).catch(() => undefined);
                const resolv = chroot.path("/etc/resolv.conf");
                fs.rmSync(resolv, { force: true });
                if (fs.lstatSync(`${resolv}.image-factory`, { throwIfNoEntry: false })) fs.renameSync(`${resolv}.image-factory`, resolv);
                await bootPart.writeBack(spec.sourceDateEpoch);
                // The root file system keeps /boot/firmware as the empty mount point the base had.
                await chroot.host(["find", chroot.path("/boot/firmware"), "-mindepth", "1", "-delete"]);
                await chroot.unmountAll();
                await cleanup(chroot, spec.sourceDateEpoch);
                await makeRootFs(chroot, image, rootPart, spec, log);
            },
        },
    ],
    async release({ chroot, root, log }) {
        await chroot.unmountAll().catch(() => undefined);
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

/**
 * The root partition made again from the tree, in place at its offset in the image: the base's UUID, label, block and
 * inode size and features, the hash seed from the UUID and every inode's times at SOURCE_DATE_EPOCH, so the same
 * inputs give the same bytes whoever builds them. Free blocks are discarded (holes in the sparse image), so no byte of
 * the base's old root survives outside the files.
 */
async function makeRootFs(chroot: Chroot, image: string, part: { offset: number; size: number; shape: Ext4Shape }, spec: PiSpec, log: BuildLog): Promise<void> {
    const { shape } = part;
    const content = await apparentSize(chroot);
    if (content * 1.1 + 32 * MIB > part.size) {
        throw new Error(`${spec.name}: the image root holds ${Math.ceil(content / MIB)} MiB, too much for its ${Math.floor(part.size / MIB)} MiB partition: ` +
            `raise builder.growMiB in the recipe by at least ${Math.ceil((content * 1.1 + 32 * MIB - part.size) / MIB) + 1}`);
    }
    const blocks = Math.floor(part.size / shape.blockSize);
    await chroot.host(["mkfs.ext4", "-q", "-F", "-b", String(shape.blockSize), "-I", String(shape.inodeSize), "-O", ["none", ...shape.features].join(","),
        "-L", shape.label, "-U", shape.uuid, "-E", `offset=${part.offset},hash_seed=${shape.uuid},root_owner=0:0`, "-d", chroot.root, image, String(blocks)],
    { env: { E2FSPROGS_FAKE_TIME: String(spec.sourceDateEpoch) } });
    await clampInodeTimes(chroot, image, part.offset, spec.sourceDateEpoch, log);
    log.line(`pi: root ext4 ${shape.uuid} (${shape.features.join(" ")}), ${blocks} blocks of ${shape.blockSize}, ${Math.ceil(content / MIB)} MiB of files`);
}

function baseOf(spec: PiSpec): { id: string; version: string; sha256: string } {
    return { id: spec.base.id, version: spec.base.version, sha256: spec.base.sha256 };
}
