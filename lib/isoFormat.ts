// ISO 9660 images as files: the El Torito layout our ISOs use, reading one back (its files, boot catalog, the
// installer initrd's members, one file out) with xorriso, and the cloud-init NoCloud seed documents. Shared by the
// ISO and Packer builders (lib/stages) and by validation and the boot gate, which read finished images.
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import { run } from "./exec";

export const BOOT_IMAGE = "isolinux/isolinux.bin";
export const BOOT_CATALOG = "isolinux/boot.cat";

// cloud-init user-data: the FR-3 posture, the same as the rootfs builder bakes in.
export function nocloudUserData(spec: { hostname: string; domain: string; user: { name: string; authorizedKeys: string[] } }): string {
    const keys = spec.user.authorizedKeys.map((k) => `      - ${JSON.stringify(k)}`).join("\n");
    return [
        "#cloud-config",
        `hostname: ${spec.hostname}`,
        `fqdn: ${spec.hostname}.${spec.domain}`,
        "manage_etc_hosts: true",
        "ssh_pwauth: false",
        "disable_root: true",
        "users:",
        `  - name: ${spec.user.name}`,
        "    shell: /bin/bash",
        "    lock_passwd: true",
        "    sudo: \"ALL=(ALL) NOPASSWD:ALL\"",
        "    ssh_authorized_keys:",
        keys || "      []",
        "",
    ].join("\n");
}

export function nocloudMetaData(spec: { name: string; hostname: string; buildKey: string }): string {
    // The instance id changes with the build: cloud-init re-runs its per-instance modules for a new seed.
    return `instance-id: ${spec.name}-${spec.buildKey.slice(0, 12)}\nlocal-hostname: ${spec.hostname}\n`;
}

/** Files on the finished ISO (read back from the image, not the staging tree) with sizes, sorted. */
export async function isoFiles(iso: string): Promise<{ path: string; size: number }[]> {
    const { stdout } = await run("xorriso", ["-indev", iso, "-find", "/", "-type", "f", "-exec", "lsdl", "--"], { hint: "is this an ISO 9660 image?" });
    const out: { path: string; size: number }[] = [];
    for (const line of stdout.split("\n")) {
        // -rw-r--r--    1 0        0            1234 Jan  1  2025 '/path'
        const m = /^\S+\s+\d+\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+\S+\s+'(.*)'$/.exec(line.trim());
        if (m) out.push({ path: m[2], size: Number(m[1]) });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** The El Torito boot catalog as xorriso reports it: platform, emulation and boot image path per entry. */
export async function bootCatalog(iso: string): Promise<{ entries: { platform: string; emulation: string; path: string }[]; catalogPath?: string }> {
    const { stdout } = await run("xorriso", ["-indev", iso, "-report_el_torito", "plain"]);
    const entries: { platform: string; emulation: string; path: string }[] = [];
    let catalogPath: string | undefined;
    for (const line of stdout.split("\n")) {
        const cat = /^El Torito cat path\s*:\s*(\S+)/.exec(line);
        if (cat) catalogPath = cat[1];
        // "El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4       5968"  then "El Torito img path :   1  /isolinux/isolinux.bin"
        const img = /^El Torito boot img\s*:\s*\d+\s+(\S+)\s+\S+\s+(\S+)/.exec(line);
        if (img) entries.push({ platform: img[1], emulation: img[2], path: "" });
        const p = /^El Torito img path\s*:\s*(\d+)\s+(\S+)/.exec(line);
        if (p && entries[Number(p[1]) - 1]) entries[Number(p[1]) - 1].path = p[2];
    }
    return { entries, catalogPath };
}

/**
 * Member names of an initrd made of concatenated gzip'd newc cpio archives (how the preseed is added). cpio(1)
 * stops at the first archive's trailer, so the headers are walked here.
 */
export function initrdMembers(gz: Buffer): string[] {
    const data = zlib.gunzipSync(gz); // multi-member gzip: every archive, one after the other
    const names: string[] = [];
    let off = 0;
    while (off + 110 <= data.length) {
        if (data.toString("latin1", off, off + 6) !== "070701") {
            off++; // padding (zeros) between archives
            continue;
        }
        const field = (i: number) => parseInt(data.toString("latin1", off + 6 + i * 8, off + 14 + i * 8), 16);
        const fileSize = field(6);
        const nameSize = field(11);
        const name = data.toString("utf8", off + 110, off + 110 + nameSize - 1);
        const align = (n: number) => (n + 3) & ~3;
        off = align(off + 110 + nameSize) + align(fileSize);
        if (name !== "TRAILER!!!") names.push(name);
    }
    return names;
}

/** Extracts one file of an ISO (no mount, no root). */
export async function isoExtract(iso: string, file: string, dest: string): Promise<void> {
    fs.rmSync(dest, { force: true });
    await run("xorriso", ["-osirrox", "on", "-indev", iso, "-extract", file, dest]);
}
