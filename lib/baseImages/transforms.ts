// Transforms of downloaded base-image files, applied in order: each takes a file and returns the file it made.
//   StripVhdFooter   fixed VHD -> raw, after checking the 512-byte footer's "conectix" cookie
//   QemuImgConvert   qemu-img convert -f <from> -O <to>
//   Decompress       gz (zlib), xz, zst (their CLIs), streaming
//   Rename           give the result its final name
import * as fs from "node:fs";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import * as zlib from "node:zlib";
import execa from "execa";
import { run, requireTool } from "../exec";

export type Transform =
    | { kind: "StripVhdFooter" }
    | { kind: "QemuImgConvert"; from: string; to: string }
    | { kind: "Decompress"; format?: "gz" | "xz" | "zst" }
    | { kind: "Rename"; to: string };

export const VHD_FOOTER = 512;
const VHD_TYPES: Record<number, string> = { 2: "fixed", 3: "dynamic", 4: "differencing" };

/** Checks the VHD footer and returns its disk type; refuses files without a valid footer. */
export function readVhdFooter(file: string): { type: string; currentSize: number } {
    const size = fs.statSync(file).size;
    if (size < VHD_FOOTER) throw new Error(`${path.basename(file)} is ${size} bytes: too small to carry a VHD footer`);
    const fd = fs.openSync(file, "r");
    const footer = Buffer.alloc(VHD_FOOTER);
    try {
        fs.readSync(fd, footer, 0, VHD_FOOTER, size - VHD_FOOTER);
    } finally {
        fs.closeSync(fd);
    }
    if (footer.toString("latin1", 0, 8) !== "conectix") {
        throw new Error(`${path.basename(file)} has no VHD footer (the last 512 bytes do not start with the "conectix" cookie): ` +
            "refusing to strip bytes from a file that is not a VHD; check the catalog entry's transforms");
    }
    const type = VHD_TYPES[footer.readUInt32BE(60)] ?? `unknown (${footer.readUInt32BE(60)})`;
    return { type, currentSize: Number(footer.readBigUInt64BE(48)) };
}

export function stripVhdFooter(file: string): string {
    const { type, currentSize } = readVhdFooter(file);
    if (type !== "fixed") throw new Error(`${path.basename(file)} is a ${type} VHD; only a fixed VHD is raw data plus a footer: use QemuImgConvert { from: "vpc" } instead`);
    const dataSize = fs.statSync(file).size - VHD_FOOTER;
    if (currentSize !== dataSize) throw new Error(`${path.basename(file)}: the footer says ${currentSize} bytes of disk, the file holds ${dataSize}; the download is damaged`);
    fs.truncateSync(file, dataSize);
    return file;
}

export function decompressFormat(file: string, format?: "gz" | "xz" | "zst"): "gz" | "xz" | "zst" {
    if (format) return format;
    const ext = path.extname(file).slice(1);
    if (ext === "gz" || ext === "xz" || ext === "zst") return ext;
    throw new Error(`cannot tell how ${path.basename(file)} is compressed: name the format in the Decompress step`);
}

async function decompress(file: string, format?: "gz" | "xz" | "zst"): Promise<string> {
    const fmt = decompressFormat(file, format);
    const out = file.endsWith(`.${fmt}`) ? file.slice(0, -fmt.length - 1) : `${file}.out`;
    const partial = `${out}.partial`;
    try {
        if (fmt === "gz") {
            await pipeline(fs.createReadStream(file, { highWaterMark: 1 << 20 }), zlib.createGunzip(), fs.createWriteStream(partial));
        } else {
            const tool = requireTool(fmt === "xz" ? "xz" : "zstd");
            const fd = fs.openSync(partial, "w");
            try {
                await execa(tool, ["-dc", file], { stdout: fd, buffer: false });
            } finally {
                fs.closeSync(fd);
            }
        }
        fs.renameSync(partial, out);
    } catch (err) {
        fs.rmSync(partial, { force: true });
        throw new Error(`decompressing ${path.basename(file)} (${fmt}) failed: ${(err as Error).message}`);
    }
    fs.rmSync(file, { force: true });
    return out;
}

async function convert(file: string, from: string, to: string): Promise<string> {
    const qemuImg = requireTool("qemu-img");
    const out = `${file}.${to}.partial`;
    await run(qemuImg, ["convert", "-q", "-f", from, "-O", to, file, out], { hint: `qemu-img could not read ${path.basename(file)} as ${from}` });
    fs.rmSync(file, { force: true });
    const converted = file.replace(/\.[^./]+$/, "") + `.${to}`;
    fs.renameSync(out, converted);
    return converted;
}

export async function applyTransforms(file: string, transforms: readonly Transform[], log: (line: string) => void = () => undefined): Promise<string> {
    let cur = file;
    for (const t of transforms) {
        switch (t.kind) {
            case "StripVhdFooter":
                cur = stripVhdFooter(cur);
                log(`transform: stripped the VHD footer of ${path.basename(cur)}`);
                break;
            case "QemuImgConvert":
                cur = await convert(cur, t.from, t.to);
                log(`transform: qemu-img convert ${t.from} -> ${t.to}: ${path.basename(cur)}`);
                break;
            case "Decompress":
                cur = await decompress(cur, t.format);
                log(`transform: decompressed to ${path.basename(cur)}`);
                break;
            case "Rename": {
                if (t.to.includes("/") || t.to.startsWith(".")) throw new Error(`Rename target must be a plain file name, got ${t.to}`);
                const next = path.join(path.dirname(cur), t.to);
                fs.renameSync(cur, next);
                cur = next;
                log(`transform: renamed to ${t.to}`);
                break;
            }
            default: {
                const never: never = t;
                throw new Error(`unknown transform ${JSON.stringify(never)}`);
            }
        }
    }
    return cur;
}
