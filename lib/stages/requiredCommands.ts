// The commands each builder runs, checked all at once before a build starts: a machine missing one fails in a
// second naming every missing command and its Debian package, not twenty minutes in with a half-built disk.
import { debianPackageOf, ToolMissingError, which } from "../exec";

export type BuilderKind = "rootfs" | "packer" | "pi" | "iso";

const BY_BUILDER: Record<BuilderKind, string[]> = {
    rootfs: ["mmdebstrap", "unshare", "chroot", "mount", "mkfs.ext4", "debugfs", "sfdisk", "grub-mkimage", "qemu-img"],
    packer: ["packer", "qemu-system-x86_64", "qemu-img", "ssh-keygen"],
    pi: ["unshare", "mount", "fuse2fs", "dumpe2fs", "mkfs.ext4", "debugfs", "sfdisk", "mcopy", "mmd", "qemu-aarch64-static", "xz", "chroot"],
    iso: ["xorriso"],
};

/** Built by tools/build.sh rather than installed from Debian. */
const BUILT_HERE: Record<string, string> = { packer: "bash tools/build.sh packer (into .tools/bin, which scripts/env.sh puts on PATH)" };

export function requiredCommands(builder: BuilderKind, o: { playbook?: boolean; installerIso?: boolean } = {}): string[] {
    return [...BY_BUILDER[builder], ...(o.playbook ? ["ansible-playbook"] : []), ...(builder === "iso" && o.installerIso ? ["cpio"] : [])];
}

/** Throws one error naming every missing command and how to get it; returns quietly when all are there. */
export function checkCommands(what: string, commands: string[], envPath = process.env.PATH ?? "", sbin?: string[]): void {
    const missing = commands.filter((c) => !which(c, envPath, sbin));
    if (!missing.length) return;
    const how = missing.map((c) => {
        const pkg = debianPackageOf(c);
        return `${c} (${BUILT_HERE[c] ?? (pkg ? `Debian package ${pkg}` : "not packaged: put it on PATH")})`;
    });
    const pkgs = [...new Set(missing.map((c) => debianPackageOf(c)).filter((p): p is string => !!p))];
    throw new ToolMissingError(`${what}: ${missing.length > 1 ? "these commands are" : "a command is"} missing from PATH: ${how.join(", ")}; ` +
        `nothing was built. Install ${pkgs.length ? `with apt-get install ${pkgs.join(" ")} (bash scripts/setup.sh does it)` : "them"} and run again`,
    missing[0], pkgs[0]);
}
