// Offline inspection of a qcow2 without booting it, without root and without mounting anything:
// qemu-img reads the partition table and copies the root partition out as a sparse raw file, and e2fsprogs'
// debugfs reads files from that ext4 file system directly. (libguestfs would boot an appliance VM per
// inspection: tens of seconds under TCG, and fragile in containers. This needs only qemu-utils and e2fsprogs.)
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { run } from "../exec";

const SECTOR = 512;
const EXT_MAGIC = 0xef53;

export interface Partition {
    index: number;
    /** Byte offset and length in the virtual disk. */
    offset: number;
    size: number;
    scheme: "mbr" | "gpt" | "none";
}

/** An inspection that cannot proceed, with the fix (a factory: see lib/exec.ts on why not a class). */
export function inspectError(message: string, fix: string): Error & { fix: string } {
    return Object.assign(new Error(`${message}: ${fix}`), { name: "InspectError", fix });
}

async function readDisk(qcow2: string, format: string, sectorOffset: number, sectors: number, tmp: string): Promise<Buffer> {
    const out = path.join(tmp, `read-${sectorOffset}-${sectors}.bin`);
    await run("qemu-img", ["dd", "-f", format, "-O", "raw", `bs=${SECTOR}`, `skip=${sectorOffset}`, `count=${sectorOffset + sectors}` /* qemu-img dd counts from the start of the disk, not from skip */, `if=${qcow2}`, `of=${out}`]);
    const buf = fs.readFileSync(out);
    fs.rmSync(out, { force: true });
    return buf;
}

/** Partitions from an MBR or GPT partition table (sector 0 and the GPT header and entries after it). */
export function parsePartitionTable(head: Buffer, diskSize: number): Partition[] {
    if (head.length < SECTOR || head.readUInt16LE(510) !== 0xaa55) {
        return [{ index: 0, offset: 0, size: diskSize, scheme: "none" }];
    }
    const mbr: Partition[] = [];
    let protective = false;
    for (let i = 0; i < 4; i++) {
        const e = 446 + i * 16;
        const type = head[e + 4];
        const start = head.readUInt32LE(e + 8);
        const count = head.readUInt32LE(e + 12);
        if (type === 0xee) protective = true;
        if (type !== 0 && count > 0) mbr.push({ index: i + 1, offset: start * SECTOR, size: count * SECTOR, scheme: "mbr" });
    }
    if (!protective) return mbr;
    const hdr = head.subarray(SECTOR, 2 * SECTOR);
    if (hdr.toString("latin1", 0, 8) !== "EFI PART") throw new Error("protective MBR without a GPT header");
    const entriesLba = Number(hdr.readBigUInt64LE(72));
    const count = hdr.readUInt32LE(80);
    const entrySize = hdr.readUInt32LE(84);
    const gpt: Partition[] = [];
    for (let i = 0; i < count; i++) {
        const off = entriesLba * SECTOR + i * entrySize;
        if (off + entrySize > head.length) break;
        const e = head.subarray(off, off + entrySize);
        if (e.subarray(0, 16).every((b) => b === 0)) continue;
        const first = Number(e.readBigUInt64LE(32));
        const last = Number(e.readBigUInt64LE(40));
        gpt.push({ index: i + 1, offset: first * SECTOR, size: (last - first + 1) * SECTOR, scheme: "gpt" });
    }
    return gpt;
}

/** A read-only view of a disk image's root file system. */
export class OfflineImage {
    private constructor(readonly qcow2: string, readonly partition: Partition, private readonly fsImage: string, private readonly tmp: string) {}

    /** Opens the largest ext2/3/4 partition of the image (the root file system of every image we build). */
    static async open(qcow2: string, opts: { tmpDir?: string } = {}): Promise<OfflineImage> {
        if (!path.isAbsolute(qcow2)) throw inspectError(`qcow2 path ${JSON.stringify(qcow2)} is relative`, "give an absolute path (QCOW2=/abs/path/image.qcow2)");
        if (!fs.existsSync(qcow2)) throw inspectError(`no file at ${qcow2}`, "check QCOW2: it must point at an existing local file");
        const tmp = fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), "if-inspect-"));
        try {
            const { stdout } = await run("qemu-img", ["info", "--output=json", qcow2]);
            const info = JSON.parse(stdout) as { format: string; "virtual-size": number };
            const head = await readDisk(qcow2, info.format, 0, 2048, tmp);
            const parts = parsePartitionTable(head, info["virtual-size"]);
            const ext: Partition[] = [];
            for (const p of parts) {
                const sb = await readDisk(qcow2, info.format, p.offset / SECTOR + 2, 2, tmp);
                if (sb.length >= 58 && sb.readUInt16LE(56) === EXT_MAGIC) ext.push(p);
            }
            if (ext.length === 0) {
                throw inspectError(`no ext2/3/4 file system in ${qcow2} (${parts.length} partition(s))`,
                    "offline validation reads ext4 root file systems; boot-test images with other file systems instead");
            }
            const root = ext.sort((a, b) => b.size - a.size)[0];
            const fsImage = path.join(tmp, "root.raw");
            await run("qemu-img", ["convert", "-O", "raw", "--image-opts",
                `driver=raw,offset=${root.offset},size=${root.size},file.driver=${info.format},file.file.driver=file,file.file.filename=${qcow2}`, fsImage]);
            return new OfflineImage(qcow2, root, fsImage, tmp);
        } catch (err) {
            fs.rmSync(tmp, { recursive: true, force: true });
            throw err;
        }
    }

    private async debugfs(request: string): Promise<string> {
        const { stdout } = await run("debugfs", ["-R", request, this.fsImage]);
        return stdout;
    }

    /** Type and symlink target of a path, or undefined when it does not exist. */
    async stat(p: string): Promise<{ type: string; mode: number; size: number; linkTarget?: string } | undefined> {
        const out = await this.debugfs(`stat "${p}"`);
        const m = /Type:\s+(\S+)\s+Mode:\s+(\d+).*?\n[\s\S]*?Size:\s+(\d+)/.exec(out);
        if (!m) return undefined;
        const link = /Fast link dest: "(.*)"/.exec(out)?.[1];
        return { type: m[1], mode: parseInt(m[2], 8), size: Number(m[3]), linkTarget: link };
    }

    /** Follows symlinks (absolute or relative, up to 20 hops) to the path they finally name. */
    async resolve(p: string): Promise<string | undefined> {
        let cur = p;
        for (let i = 0; i < 20; i++) {
            const st = await this.stat(cur);
            if (!st) return undefined;
            if (st.type !== "symlink") return cur;
            // Short targets live in the inode ("fast" links); longer ones in a data block, which dump reads.
            const target = st.linkTarget ?? (await this.dump(cur)) ?? "";
            cur = target.startsWith("/") ? target : path.posix.join(path.posix.dirname(cur), target);
        }
        return undefined;
    }

    async exists(p: string): Promise<boolean> {
        return (await this.resolve(p)) !== undefined;
    }

    /** Content of a file, following symlinks; undefined when it does not exist. */
    async readFile(p: string): Promise<string | undefined> {
        const resolved = await this.resolve(p);
        return resolved === undefined ? undefined : this.dump(resolved);
    }

    private async dump(p: string): Promise<string | undefined> {
        const out = path.join(this.tmp, "cat.out");
        try {
            await run("debugfs", ["-R", `dump "${p}" ${out}`, this.fsImage]);
            if (!fs.existsSync(out)) return undefined;
            return fs.readFileSync(out, "utf8");
        } finally {
            fs.rmSync(out, { force: true });
        }
    }

    /** Names in a directory (without . and ..), or undefined when it does not exist. */
    async list(dir: string): Promise<string[] | undefined> {
        const st = await this.stat(dir);
        if (!st || st.type !== "directory") return undefined;
        const out = await this.debugfs(`ls -p "${dir}"`);
        return out.split("\n").map((l) => l.split("/")[5]).filter((n): n is string => !!n && n !== "." && n !== "..").sort();
    }

    /** Copies a directory tree out of the image (symlinks stay symlinks) and returns where it went. */
    async extract(dir: string, dest?: string): Promise<string> {
        const target = dest ?? fs.mkdtempSync(path.join(this.tmp, "x-"));
        fs.mkdirSync(target, { recursive: true });
        await this.debugfs(`rdump "${dir}" ${target}`);
        return path.join(target, path.posix.basename(dir) || "");
    }

    close(): void {
        fs.rmSync(this.tmp, { recursive: true, force: true });
    }
}
