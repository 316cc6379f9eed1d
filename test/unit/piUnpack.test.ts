// lib/stages/pi.ts: a Raspberry Pi image's root file system read into a tree without root or a host mount (issue 35),
// and made again from it. A small ext4 with what Raspberry Pi OS carries (owners, a hard link, a symlink, a file
// capability, a directory ACL, device nodes in /dev) goes through unpackRoot; what the tree's root sees must match.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { nsRun } from "../../lib/stages/namespace";
import { e2fsAt } from "../../lib/stages/disk";
import { parseExt4Shape, unpackRoot } from "../../lib/stages/pi";

const OFFSET = 1024 * 1024;
// cap_net_raw+ep in the v2 format (what setcap writes for ping): revision 2 | effective, permitted bit 13.
const CAP_NET_RAW = "0100000200200000000000000000000000000000";
// u::rwx g::r-x g:4:r-x m::r-x o::r-x (systemd's default ACL on /var/log/journal), the kernel's format.
const ACL = "0200000001000700ffffffff04000500ffffffff080005000400000010000500ffffffff20000500ffffffff";

/** What the tree's root sees of each path: type, mode, owner, link count or target, xattrs (hex), content. */
const DESCRIBE = `import os, sys, stat
root = sys.argv[1]
for d, dirs, files in os.walk(root):
    dirs.sort()
    for x in sorted(dirs + files):
        p = os.path.join(d, x)
        st = os.lstat(p)
        xs = ",".join(f"{n}={os.getxattr(p, n, follow_symlinks=False).hex()}" for n in sorted(os.listxattr(p, follow_symlinks=False)))
        what = os.readlink(p) if stat.S_ISLNK(st.st_mode) else open(p).read() if stat.S_ISREG(st.st_mode) else ""
        print(os.path.relpath(p, root), oct(st.st_mode), f"{st.st_uid}:{st.st_gid}", st.st_nlink if not stat.S_ISDIR(st.st_mode) else "-", xs, what)
`;

describe("Pi builder: the base's root file system unpacked without root (fuse2fs) and its shape", function () {
    this.timeout(60_000);
    let tmp: string;
    beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-piunpack-")); });
    afterEach(async () => {
        await nsRun(["rm", "-rf", tmp]).catch(() => undefined);
        fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("keeps owners, modes, hard links, symlinks, file capabilities and ACLs; leaves /dev's device nodes out", async () => {
        const src = path.join(tmp, "src");
        const img = path.join(tmp, "disk.img");
        // Made as the namespace's root, as a base's files are: ids and xattrs only root may set.
        await nsRun(["sh", "-c", `set -e; src=$1
            mkdir -p "$src/home/pi" "$src/usr/bin" "$src/var/log/journal" "$src/dev" "$src/boot/firmware"
            echo hello > "$src/home/pi/note"; chown -R 1000:1000 "$src/home/pi"; chmod 640 "$src/home/pi/note"
            ln "$src/home/pi/note" "$src/home/pi/note.link"; ln -s ../home/pi/note "$src/usr/bin/to-note"
            printf 'ping' > "$src/usr/bin/ping"; chmod 755 "$src/usr/bin/ping"
            python3 -c 'import os,sys; os.setxattr(sys.argv[1], "security.capability", bytes.fromhex(sys.argv[2])); os.setxattr(sys.argv[3], "system.posix_acl_default", bytes.fromhex(sys.argv[4])); os.setxattr(sys.argv[3], "system.posix_acl_access", bytes.fromhex(sys.argv[4]))' "$src/usr/bin/ping" ${CAP_NET_RAW} "$src/var/log/journal" ${ACL}
            chgrp 4 "$src/var/log/journal"
            truncate -s 0 "$2"; truncate -s 40M "$2"
            mkfs.ext4 -q -F -L rootfs -E offset=${OFFSET} -d "$src" "$2" 16384`, "sh", src, img]);
        // A device node cannot be made in any user namespace: written into the image with debugfs, as debootstrap leaves one.
        await nsRun(["sh", "-c", 'printf "cd /dev\\nmknod null c 1 3\\n" | debugfs -w -f - "$1"', "sh", `${img}?offset=${OFFSET}`]);
        assert.match((await nsRun(["debugfs", "-R", "ls -l /dev", `${img}?offset=${OFFSET}`])).stdout, /\s20\d{3}\s.*\snull\s*$/m, "the image has /dev/null");
        const root = path.join(tmp, "root");
        fs.mkdirSync(root);
        await unpackRoot(img, OFFSET, root);
        const before = (await nsRun(["python3", "-c", DESCRIBE, src])).stdout;
        const after = (await nsRun(["python3", "-c", DESCRIBE, root])).stdout;
        assert.match(before, /^usr\/bin\/ping 0o100755 0:0 1 security\.capability=0100000200200000000000000000000000000000 ping$/m);
        assert.match(before, /^var\/log\/journal 0o40755 0:4 - system\.posix_acl_access=0200.*,system\.posix_acl_default=0200/m);
        assert.match(before, /^home\/pi\/note 0o100640 1000:1000 2 {2}hello$/m);
        // The tree's root directory is the caller's (a mkdir outside), so compare what is in it.
        assert.equal(after, before);
        assert.deepEqual(fs.readdirSync(path.join(root, "dev")), [], "/dev's nodes left out, /dev kept");
        assert.equal(fs.existsSync(path.join(root, "lost+found")), false);
        assert.equal(fs.existsSync(`${root}.base`), false, "the mount point is gone");
        assert.equal(fs.readFileSync("/proc/self/mountinfo", "utf8").includes(tmp), false, "nothing mounted on the host");
    });

    it("refuses a device node outside /dev, naming it", async () => {
        const img = path.join(tmp, "disk.img");
        fs.mkdirSync(path.join(tmp, "src", "etc"), { recursive: true });
        await nsRun(["sh", "-c", `truncate -s 40M "$1" && mkfs.ext4 -q -F -E offset=${OFFSET} -d "$2" "$1" 16384 && printf "cd /etc\\nmknod odd c 1 3\\n" | debugfs -w -f - "$1?offset=${OFFSET}"`, "sh", img, path.join(tmp, "src")]);
        fs.mkdirSync(path.join(tmp, "root"));
        await assert.rejects(unpackRoot(img, OFFSET, path.join(tmp, "root")), /device nodes outside \/dev, which no build without CAP_MKNOD can make: \S+\/etc\/odd/);
    });

    it("names a file system at an offset the e2fsprogs way, and refuses a path e2fsprogs would misread", () => {
        assert.equal(e2fsAt("/work/b/sdr-pi.img", 71303168), "/work/b/sdr-pi.img?offset=71303168");
        assert.throws(() => e2fsAt("/work/a?b/sdr-pi.img", 0), /^Error: the build directory \/work\/a\?b has a "\?" in its path: set factory:workDir to a path without one$/);
    });

    it("reads the base's shape from dumpe2fs, leaving out states that are not features", () => {
        const shape = parseExt4Shape([
            "Filesystem volume name:   rootfs",
            "Filesystem UUID:          30ca41d2-c256-4673-8564-2342d8ad83e0",
            "Filesystem features:      has_journal ext_attr resize_inode dir_index filetype needs_recovery extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum",
            "Block size:               4096",
            "Inode size:\t          256",
        ].join("\n"));
        assert.deepEqual(shape, {
            uuid: "30ca41d2-c256-4673-8564-2342d8ad83e0", label: "rootfs", blockSize: 4096, inodeSize: 256,
            features: ["has_journal", "ext_attr", "resize_inode", "dir_index", "filetype", "extent", "64bit", "flex_bg", "sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize", "metadata_csum"],
        });
        assert.equal(parseExt4Shape("Filesystem volume name:   <none>\nFilesystem UUID: 1-2\nFilesystem features: ext_attr\nBlock size: 1024\nInode size: 128\n").label, "");
        assert.throws(() => parseExt4Shape("dumpe2fs: Bad magic number in super-block"), /not an ext4 superblock/);
    });
});
