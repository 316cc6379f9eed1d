// Small synthetic images for validation tests: a root tree shaped like one of our images (or deliberately
// broken), and the same tree turned into a real partitioned qcow2 with mkfs.ext4 -d, sfdisk and qemu-img.
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";

export const KEY_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@example";

function write(root: string, p: string, content: string, mode = 0o644): void {
    const f = path.join(root, p);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, content, { mode });
}

function link(root: string, p: string, target: string): void {
    const f = path.join(root, p);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.rmSync(f, { force: true });
    fs.symlinkSync(target, f);
}

const dpkgStanza = (pkg: string, version: string) => `Package: ${pkg}\nStatus: install ok installed\nPriority: optional\nVersion: ${version}\n`;

/** A root tree that passes every check. */
export function makeGoodTree(root: string, opts: { user?: string; image?: string; version?: string; buildKey?: string } = {}): void {
    const user = opts.user ?? "ansible";
    write(root, "etc/ssh/sshd_config", "# Debian default\nInclude /etc/ssh/sshd_config.d/*.conf\n#PermitRootLogin prohibit-password\nKbdInteractiveAuthentication no\nUsePAM yes\n");
    write(root, "etc/ssh/sshd_config.d/10-image-factory.conf", "PasswordAuthentication no\nPermitRootLogin prohibit-password\n");
    write(root, "etc/ssh/sshd_config.d/50-cloud-init.conf", "PasswordAuthentication yes\n"); // loses: sshd keeps the first value
    write(root, "var/lib/dpkg/status", [dpkgStanza("cloud-init", "22.4.2-1"), dpkgStanza("openssh-server", "1:9.2p1-2"), dpkgStanza("sudo", "1.9.13p3-1")].join("\n"));
    write(root, "usr/bin/cloud-init", "#!/usr/bin/python3\n", 0o755);
    write(root, "usr/bin/python3.11", "ELF", 0o755);
    link(root, "usr/bin/python3", "python3.11");
    write(root, "usr/bin/sudo", "ELF", 0o4755);
    for (const u of ["cloud-init-local.service", "cloud-init.service", "cloud-config.service", "cloud-final.service"]) {
        link(root, `etc/systemd/system/cloud-init.target.wants/${u}`, `/lib/systemd/system/${u}`);
    }
    link(root, "etc/systemd/system/multi-user.target.wants/ssh.service", "/lib/systemd/system/ssh.service");
    write(root, "etc/passwd", `root:x:0:0:root:/root:/bin/bash\n${user}:x:1000:1000:Bootstrap:/home/${user}:/bin/bash\n`);
    write(root, "etc/shadow", `root:*:20000:0:99999:7:::\n${user}:!:20000:0:99999:7:::\n`, 0o640);
    write(root, `home/${user}/.ssh/authorized_keys`, `${KEY_LINE}\n`, 0o600);
    write(root, "etc/sudoers", "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n", 0o440);
    write(root, `etc/sudoers.d/90-image-factory-${user}`, `${user} ALL=(ALL:ALL) NOPASSWD: ALL\n`, 0o440);
    write(root, "etc/sudoers.d/README", "# As in Debian: comments only\n", 0o440);
    write(root, "etc/sudoers.d/99-ignored.bak", `${user} ALL=(ALL) NOPASSWD: ALL\n`, 0o440); // sudo skips names with a dot
    write(root, "etc/image-factory/pkg-manifest.txt", "cloud-init\t22.4.2-1\tall\nopenssh-server\t1:9.2p1-2\tamd64\n");
    write(root, "etc/image-factory/build.json", JSON.stringify({ image: opts.image ?? "fake", version: opts.version ?? "v2026.01.01", buildKey: opts.buildKey ?? "k1" }));
    write(root, "boot/grub/grub.cfg", "linux /boot/vmlinuz root=UUID=x ro console=ttyS0\n");
}

/** Turns a root tree into a partitioned qcow2 (MBR, one ext4 partition at 1 MiB), like our builds. */
export async function treeToQcow2(root: string, out: string, sizeMiB = 64): Promise<void> {
    const fsImg = `${out}.ext4`;
    const raw = `${out}.raw`;
    fs.rmSync(fsImg, { force: true });
    await execa("truncate", ["-s", `${sizeMiB - 1}M`, fsImg]);
    await execa("mkfs.ext4", ["-q", "-F", "-d", root, fsImg]);
    await execa("truncate", ["-s", `${sizeMiB}M`, raw]);
    await execa("sfdisk", ["-q", raw], { input: "label: dos\n2048,,83,*\n" });
    await execa("dd", [`if=${fsImg}`, `of=${raw}`, "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"]);
    await execa("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw, out]);
    fs.rmSync(fsImg, { force: true });
    fs.rmSync(raw, { force: true });
}
