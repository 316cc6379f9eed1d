// The validation gate for every artifact format: qcow2 images are inspected as they are; a Raspberry Pi .img.xz
// is decompressed (streaming, sparse) into scratch space first and gets the same checks; an ISO gets its own:
// readable ISO 9660, the El Torito boot catalog of a bootable ISO, and the seed or preseed it must carry.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { run, which } from "../exec";
import { BOOT_IMAGE, bootCatalog, initrdMembers, isoExtract, isoFiles } from "../isoFormat";
import type { ArtifactFormat } from "../recipe";
import { toolVersions } from "../toolVersions";
import { validateQcow2, type CheckResult, type ValidateExpect, type ValidationReport } from "./offlineChecks";

export function formatOf(file: string): ArtifactFormat {
    if (file.endsWith(".img.xz")) return "img.xz";
    if (file.endsWith(".iso")) return "iso";
    return "qcow2";
}

/** Checks that do not apply to Raspberry Pi OS images (their first boot is configured without cloud-init). */
export const PI_NOT_APPLICABLE: Record<string, string> = {
    "cloud-init.installed": "Raspberry Pi OS Bookworm configures first boot with its own firstboot/userconf services, not cloud-init",
    "cloud-init.enabled": "Raspberry Pi OS Bookworm configures first boot with its own firstboot/userconf services, not cloud-init",
};

const check = (id: string, title: string, ok: boolean, reason: string, fix: string): CheckResult =>
    ok ? { id, title, status: "pass", reason } : { id, title, status: "fail", reason, fix };

export async function validateIso(iso: string, expect: ValidateExpect & { flavour?: "debian-installer" | "nocloud-seed" }, opts: { scratch?: string } = {}): Promise<ValidationReport> {
    const t0 = Date.now();
    const checks: CheckResult[] = [];
    const report = (): ValidationReport => ({
        schemaVersion: 1, image: expect.image, version: expect.version, qcow2: iso, passed: checks.every((c) => c.status !== "fail"),
        startedAt: new Date(t0).toISOString(), durationMs: Date.now() - t0, tools: toolVersions(["xorriso"]), checks,
    });
    if (!which("xorriso")) {
        checks.push(check("tools.available", "inspection tools", false, "missing: xorriso (Debian package xorriso)", "install xorriso (bash scripts/setup.sh does it)"));
        return report();
    }
    let files: { path: string; size: number }[];
    try {
        files = await isoFiles(iso);
        checks.push(check("iso.readable", "ISO 9660 file system is readable", true, `${files.length} files`, ""));
    } catch (err) {
        checks.push(check("iso.readable", "ISO 9660 file system is readable", false, (err as Error).message.split("\n")[0], "rebuild the ISO; check the file is complete (size, sha256)"));
        return report();
    }
    const names = new Set(files.map((f) => f.path));
    if (opts.scratch) fs.mkdirSync(opts.scratch, { recursive: true });
    const scratch = fs.mkdtempSync(path.join(opts.scratch ?? os.tmpdir(), "if-iso-"));
    try {
        const flavour = expect.flavour ?? (names.has("/user-data") ? "nocloud-seed" : "debian-installer");
        if (flavour === "nocloud-seed") {
            const ud = path.join(scratch, "user-data");
            const md = path.join(scratch, "meta-data");
            const present = names.has("/user-data") && names.has("/meta-data");
            checks.push(check("seed.files", "NoCloud seed: user-data and meta-data", present, present ? "both present" : "user-data or meta-data missing",
                "a NoCloud seed needs /user-data and /meta-data at the root of a volume labelled cidata"));
            if (present) {
                await isoExtract(iso, "/user-data", ud);
                await isoExtract(iso, "/meta-data", md);
                const userData = fs.readFileSync(ud, "utf8");
                checks.push(check("seed.cloud-config", "user-data is #cloud-config", userData.startsWith("#cloud-config\n"), userData.split("\n")[0], "start user-data with the line #cloud-config"));
                const hasUser = new RegExp(`^  - name: ${expect.bootstrapUser}$`, "m").test(userData) && /ssh_pwauth: false/.test(userData);
                checks.push(check("seed.bootstrap-user", "seed creates the bootstrap user, key-only", hasUser,
                    hasUser ? `${expect.bootstrapUser}: ssh keys, passwordless sudo, ssh_pwauth false` : `no key-only user ${expect.bootstrapUser} in user-data`,
                    "the seed's users list must hold the bootstrap user with ssh_authorized_keys, and ssh_pwauth: false"));
                const meta = fs.readFileSync(md, "utf8");
                checks.push(check("seed.instance-id", "meta-data has an instance-id", /^instance-id: \S+/m.test(meta), meta.split("\n")[0], "write instance-id: <id> into meta-data"));
            }
            const { stdout } = await run("xorriso", ["-indev", iso, "-pvd_info"]);
            const volume = /Volume Id\s*:\s*(\S+)/.exec(stdout)?.[1] ?? "";
            checks.push(check("seed.volume-id", "volume id is cidata", volume.toLowerCase() === "cidata", `volume id ${volume || "(none)"}`, "cloud-init finds NoCloud seeds by the volume label cidata"));
        } else {
            const cat = await bootCatalog(iso);
            const bios = cat.entries.find((e) => e.platform === "BIOS" && e.path === `/${BOOT_IMAGE}`);
            checks.push(check("iso.boot-catalog", "El Torito boot catalog has a BIOS entry", !!bios,
                bios ? `catalog ${cat.catalogPath}: ${cat.entries.length} entry(ies), BIOS no-emulation ${bios.path}` : `entries: ${JSON.stringify(cat.entries)}`,
                "build with -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table"));
            const kernel = names.has("/install/vmlinuz") && names.has("/install/initrd.gz") && names.has("/isolinux/isolinux.cfg");
            checks.push(check("installer.files", "installer kernel, initrd and boot menu", kernel, kernel ? "present" : "missing /install/vmlinuz, /install/initrd.gz or /isolinux/isolinux.cfg",
                "install debian-installer-12-netboot-amd64 and rebuild"));
            if (kernel) {
                const initrd = path.join(scratch, "initrd.gz");
                await isoExtract(iso, "/install/initrd.gz", initrd);
                const has = initrdMembers(fs.readFileSync(initrd)).includes("preseed.cfg");
                checks.push(check("installer.preseed", "preseed.cfg is inside the installer's initrd", has, has ? "initrd carries /preseed.cfg (read by d-i at start)" : "no preseed.cfg in the initrd",
                    "append a cpio with preseed.cfg to the initrd (lib/stages/iso.ts does)"));
                const cfg = path.join(scratch, "isolinux.cfg");
                await isoExtract(iso, "/isolinux/isolinux.cfg", cfg);
                const menu = fs.readFileSync(cfg, "utf8");
                const auto = /auto=true/.test(menu) && /priority=critical/.test(menu);
                checks.push(check("installer.unattended", "boot menu starts an unattended install", auto, auto ? "auto=true priority=critical" : "the kernel line lacks auto=true priority=critical",
                    "boot the installer with auto=true priority=critical"));
            }
        }
    } finally {
        fs.rmSync(scratch, { recursive: true, force: true });
    }
    return report();
}

/** Validates any artifact the factory builds. Never throws for a bad artifact: the report says what failed. */
export async function validateArtifact(file: string, expect: ValidateExpect, opts: { scratch?: string } = {}): Promise<ValidationReport> {
    const format = formatOf(file);
    if (format === "iso") return validateIso(file, expect, opts);
    if (format === "qcow2") return validateQcow2(file, expect, opts);
    const t0 = Date.now();
    if (opts.scratch) fs.mkdirSync(opts.scratch, { recursive: true });
    const scratch = fs.mkdtempSync(path.join(opts.scratch ?? os.tmpdir(), "if-img-"));
    try {
        const raw = path.join(scratch, "image.img");
        if (!fs.existsSync(file)) return validateQcow2(file, expect, opts); // reports the path problem
        // pipefail: without it a corrupt or truncated .img.xz became a short image (cp succeeds on what xz gave before
        // failing), reported as broken partitions instead of as the file that does not decompress.
        try {
            await run("bash", ["-c", 'set -o pipefail; xz -dc -- "$1" | cp --sparse=always /dev/stdin "$2"', "bash", file, raw]);
        } catch (err) {
            const said = (err as Error).message.split("\n").slice(1).join(" ").trim() || (err as Error).message;
            return {
                schemaVersion: 1, image: expect.image, version: expect.version, qcow2: file, passed: false,
                startedAt: new Date(t0).toISOString(), durationMs: Date.now() - t0, tools: toolVersions(["xz-utils"]), checks: [check("image.decompresses", ".img.xz decompresses whole", false, said, "the file is damaged or truncated: download it again, or rebuild it")],
            };
        }
        const r = await validateQcow2(raw, { ...expect, notApplicable: { ...PI_NOT_APPLICABLE, ...expect.notApplicable } }, { scratch });
        return { ...r, qcow2: file };
    } finally {
        fs.rmSync(scratch, { recursive: true, force: true });
    }
}
