// The offline validation gate (FR-3 "Ansible-ready", the runbook's checks): every check has a stable id, a
// result and a human reason, and a failure names the fix. Works on any qcow2 with an ext4 root file system.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { debianPackageOf, which } from "../exec";
import { OfflineImage } from "./inspect";
import { effectiveSshdConfig, globToRegExp, sshdValue } from "./sshdConfig";
import { toolVersions } from "../toolVersions";

export const MANIFEST_PATH = "/etc/image-factory/pkg-manifest.txt";
export const BUILD_JSON_PATH = "/etc/image-factory/build.json";

/** "skip": the check does not apply to this kind of image (the reason says why); it never blocks publishing. */
export type CheckStatus = "pass" | "fail" | "skip";

export interface CheckResult {
    id: string;
    title: string;
    status: CheckStatus;
    reason: string;
    fix?: string;
}

export interface ValidationReport {
    schemaVersion: 1;
    image: string;
    version: string;
    qcow2: string;
    passed: boolean;
    startedAt: string;
    durationMs: number;
    tools: Record<string, string>;
    checks: CheckResult[];
}

export interface ValidateExpect {
    image: string;
    version: string;
    bootstrapUser: string;
    /** Fields build.json must carry (the artifact's recorded inputs), e.g. { buildKey }. */
    buildInfo?: Record<string, string>;
    /** Check id -> why it does not apply (e.g. Raspberry Pi OS Bookworm configures first boot without cloud-init). */
    notApplicable?: Record<string, string>;
}

/** Read access to an image's file system, resolving symlinks the way the running system would. */
export interface ImageView {
    read(p: string): Promise<string | undefined>;
    exists(p: string): Promise<boolean>;
    list(dir: string): Promise<string[] | undefined>;
}

/** A directory tree seen as an image root (absolute symlinks resolve inside the tree). */
export function directoryView(root: string): ImageView {
    const resolve = (p: string): string | undefined => {
        let cur = p;
        for (let i = 0; i < 40; i++) {
            const parts = cur.split("/").filter(Boolean);
            let built = "";
            let changed = false;
            for (let j = 0; j < parts.length; j++) {
                const next = `${built}/${parts[j]}`;
                let st: fs.Stats;
                try {
                    st = fs.lstatSync(path.join(root, next));
                } catch {
                    return undefined;
                }
                if (st.isSymbolicLink()) {
                    const t = fs.readlinkSync(path.join(root, next));
                    cur = path.posix.normalize(`${t.startsWith("/") ? t : `${built}/${t}`}/${parts.slice(j + 1).join("/")}`).replace(/\/$/, "") || "/";
                    changed = true;
                    break;
                }
                built = next;
            }
            if (!changed) return built || "/";
        }
        return undefined;
    };
    return {
        async read(p) {
            const r = resolve(p);
            if (!r) return undefined;
            try {
                return fs.readFileSync(path.join(root, r), "utf8");
            } catch {
                return undefined;
            }
        },
        async exists(p) {
            return resolve(p) !== undefined;
        },
        async list(dir) {
            const r = resolve(dir);
            if (!r) return undefined;
            try {
                return fs.readdirSync(path.join(root, r)).sort();
            } catch {
                return undefined;
            }
        },
    };
}

/** An image view over a qcow2: /etc is copied out once (it is read the most), the rest is read on demand. */
export async function qcow2View(img: OfflineImage, scratch: string): Promise<ImageView> {
    const etcParent = fs.mkdtempSync(path.join(scratch, "etc-"));
    await img.extract("/etc", etcParent);
    const etc = directoryView(etcParent);
    const inEtc = (p: string) => p === "/etc" || p.startsWith("/etc/");
    return {
        async read(p) {
            if (inEtc(p)) {
                const v = await etc.read(p);
                if (v !== undefined) return v;
            }
            return img.readFile(p);
        },
        async exists(p) {
            return inEtc(p) && (await etc.exists(p)) ? true : img.exists(p);
        },
        async list(dir) {
            return inEtc(dir) ? etc.list(dir) : img.list(dir);
        },
    };
}

const FIX = {
    tools: "install qemu-utils and e2fsprogs (bash scripts/setup.sh does it) and re-run validation",
    path: "QCOW2 must point to a local file and the path must be absolute",
    cloudInit: "ensure cloud-init is installed and enabled in the image (the recipe's packages and its systemd units)",
    ssh: "set PasswordAuthentication no and PermitRootLogin prohibit-password in an sshd_config.d drop-in that sorts first (e.g. 10-*.conf), and remove any drop-in or Match block that loosens them",
    manifest: `ensure ${MANIFEST_PATH} exists in the image and lists the installed packages`,
    python: "install python3 in the image (Ansible needs it on the managed host)",
    sudo: "give the bootstrap user passwordless sudo through a drop-in in /etc/sudoers.d (user ALL=(ALL:ALL) NOPASSWD: ALL), a locked password and an authorized SSH key",
    buildInfo: `write ${BUILD_JSON_PATH} at build time with the artifact's recorded inputs (image-factory builders do)`,
    sshd: "install openssh-server and enable ssh.service",
};

type Check = (v: ImageView, e: ValidateExpect) => Promise<Omit<CheckResult, "id" | "title">>;

async function dpkgInstalled(v: ImageView, pkg: string): Promise<string | undefined> {
    const status = await v.read("/var/lib/dpkg/status");
    if (!status) return undefined;
    for (const stanza of status.split("\n\n")) {
        if (!new RegExp(`^Package: ${pkg.replace(/[.+]/g, "\\$&")}$`, "m").test(stanza)) continue;
        if (!/^Status: install ok installed$/m.test(stanza)) return undefined;
        return /^Version: (.+)$/m.exec(stanza)?.[1] ?? "unknown";
    }
    return undefined;
}

async function enabledUnits(v: ImageView): Promise<Set<string>> {
    const units = new Set<string>();
    for (const base of ["/etc/systemd/system"]) {
        for (const d of (await v.list(base)) ?? []) {
            if (!d.endsWith(".wants") && !d.endsWith(".requires")) continue;
            for (const u of (await v.list(`${base}/${d}`)) ?? []) units.add(u);
        }
    }
    return units;
}

const pass = (reason: string) => ({ status: "pass" as const, reason });
const fail = (reason: string, fix: string) => ({ status: "fail" as const, reason, fix });

export const CHECKS: Array<{ id: string; title: string; run: Check }> = [
    {
        id: "cloud-init.installed", title: "cloud-init is installed",
        async run(v) {
            const version = await dpkgInstalled(v, "cloud-init");
            const bin = await v.exists("/usr/bin/cloud-init");
            if (version && bin) return pass(`cloud-init ${version} installed (dpkg status), /usr/bin/cloud-init present`);
            return fail(version ? "dpkg lists cloud-init but /usr/bin/cloud-init is missing" : "cloud-init is not installed (not in dpkg status)", FIX.cloudInit);
        },
    },
    {
        id: "cloud-init.enabled", title: "cloud-init runs at boot",
        async run(v) {
            if (await v.exists("/etc/cloud/cloud-init.disabled")) return fail("/etc/cloud/cloud-init.disabled exists", FIX.cloudInit);
            const units = await enabledUnits(v);
            const needed = ["cloud-init-local.service", "cloud-init.service", "cloud-config.service", "cloud-final.service"];
            const missing = needed.filter((u) => !units.has(u));
            if (missing.length) return fail(`not enabled: ${missing.join(", ")}`, FIX.cloudInit);
            const grub = (await v.read("/boot/grub/grub.cfg")) ?? "";
            if (/cloud-init=disabled/.test(grub)) return fail("the kernel command line in /boot/grub/grub.cfg disables cloud-init", FIX.cloudInit);
            return pass(`enabled: ${needed.join(", ")}`);
        },
    },
    {
        id: "sshd.enabled", title: "SSH server installed and enabled",
        async run(v) {
            const version = await dpkgInstalled(v, "openssh-server");
            const units = await enabledUnits(v);
            const unit = ["ssh.service", "sshd.service", "ssh.socket"].find((u) => units.has(u));
            if (version && unit) return pass(`openssh-server ${version}, ${unit} enabled`);
            return fail(version ? "openssh-server installed but ssh.service is not enabled" : "openssh-server is not installed", FIX.sshd);
        },
    },
    {
        id: "sshd.password-authentication", title: "sshd: PasswordAuthentication no",
        async run(v) {
            const cfg = await sshdConfigOf(v);
            if (!cfg.files.length) return fail("/etc/ssh/sshd_config is missing", FIX.ssh);
            const { value, where } = sshdValue(cfg, "PasswordAuthentication");
            const loosened = cfg.matched.filter((d) => d.keyword === "passwordauthentication" && d.value.toLowerCase() !== "no");
            if (value !== "no") return fail(`effective PasswordAuthentication is ${value} (${where})`, FIX.ssh);
            if (loosened.length) return fail(`a Match block turns it back on: "Match ${loosened[0].match}" at ${loosened[0].file}:${loosened[0].line}`, FIX.ssh);
            return pass(`effective PasswordAuthentication no (${where})`);
        },
    },
    {
        id: "sshd.permit-root-login", title: "sshd: PermitRootLogin prohibit-password",
        async run(v) {
            const cfg = await sshdConfigOf(v);
            if (!cfg.files.length) return fail("/etc/ssh/sshd_config is missing", FIX.ssh);
            const { value, where } = sshdValue(cfg, "PermitRootLogin");
            // without-password is the old spelling of prohibit-password; "no" is stricter still.
            const ok = (x: string) => ["prohibit-password", "without-password", "no"].includes(x.toLowerCase());
            if (!ok(value)) return fail(`effective PermitRootLogin is ${value} (${where})`, FIX.ssh);
            const loosened = cfg.matched.find((d) => d.keyword === "permitrootlogin" && !ok(d.value));
            if (loosened) return fail(`a Match block sets PermitRootLogin ${loosened.value}: "Match ${loosened.match}" at ${loosened.file}:${loosened.line}`, FIX.ssh);
            return pass(`effective PermitRootLogin ${value} (${where})`);
        },
    },
    {
        id: "manifest.present", title: `package manifest ${MANIFEST_PATH}`,
        async run(v) {
            const text = await v.read(MANIFEST_PATH);
            if (text === undefined) return fail(`${MANIFEST_PATH} is missing`, FIX.manifest);
            const lines = text.split("\n").filter((l) => l.trim());
            if (lines.length === 0) return fail(`${MANIFEST_PATH} is empty`, FIX.manifest);
            const bad = lines.find((l) => l.split("\t").length < 2);
            if (bad) return fail(`${MANIFEST_PATH} has a line that is not "<package>\\t<version>...": ${JSON.stringify(bad)}`, FIX.manifest);
            return pass(`${lines.length} packages listed`);
        },
    },
    {
        id: "python3.present", title: "python3 is installed",
        async run(v) {
            if (await v.exists("/usr/bin/python3")) return pass("/usr/bin/python3 resolves to an interpreter");
            return fail("/usr/bin/python3 is missing", FIX.python);
        },
    },
    {
        id: "sudo.bootstrap-user", title: "bootstrap user: key login and passwordless sudo",
        async run(v, e) {
            const u = e.bootstrapUser;
            if (!(await v.exists("/usr/bin/sudo"))) return fail("sudo is not installed", FIX.sudo);
            const passwd = (await v.read("/etc/passwd")) ?? "";
            const entry = passwd.split("\n").find((l) => l.startsWith(`${u}:`));
            if (!entry) return fail(`user ${u} does not exist in /etc/passwd`, FIX.sudo);
            const shadow = ((await v.read("/etc/shadow")) ?? "").split("\n").find((l) => l.startsWith(`${u}:`));
            const hash = shadow?.split(":")[1] ?? "";
            if (hash && !hash.startsWith("!") && hash !== "*") return fail(`user ${u} has a usable password in /etc/shadow`, FIX.sudo);
            const home = entry.split(":")[5];
            const keys = ((await v.read(`${home}/.ssh/authorized_keys`)) ?? "").split("\n").filter((l) => /^(ssh-|ecdsa-|sk-)/.test(l.trim()));
            if (keys.length === 0) return fail(`${home}/.ssh/authorized_keys has no key for ${u}`, FIX.sudo);
            const rules = await sudoRules(v);
            const rule = rules.find((r) => new RegExp(`^${u}\\s+ALL\\s*=\\s*\\(ALL(:ALL)?\\)\\s*NOPASSWD:\\s*ALL\\s*$`).test(r.text));
            if (!rule) return fail(`no "${u} ALL=(ALL:ALL) NOPASSWD: ALL" rule in /etc/sudoers or /etc/sudoers.d`, FIX.sudo);
            return pass(`user ${u}: password locked, ${keys.length} authorized key(s), passwordless sudo (${rule.file})`);
        },
    },
    {
        id: "build-info.matches", title: `build info ${BUILD_JSON_PATH} matches the artifact`,
        async run(v, e) {
            const text = await v.read(BUILD_JSON_PATH);
            if (text === undefined) return fail(`${BUILD_JSON_PATH} is missing`, FIX.buildInfo);
            let info: Record<string, unknown>;
            try {
                info = JSON.parse(text) as Record<string, unknown>;
            } catch {
                return fail(`${BUILD_JSON_PATH} is not valid JSON`, FIX.buildInfo);
            }
            const want: Record<string, string> = { image: e.image, version: e.version, ...(e.buildInfo ?? {}) };
            const wrong = Object.entries(want).filter(([k, val]) => info[k] !== val);
            if (wrong.length) {
                return fail(wrong.map(([k, val]) => `${k} is ${JSON.stringify(info[k])}, expected ${JSON.stringify(val)}`).join("; "), FIX.buildInfo);
            }
            return pass(`${Object.keys(want).join(", ")} match`);
        },
    },
];

async function sshdConfigOf(v: ImageView) {
    // Reads are async; sshd's include logic is sync, so the files it may touch are prefetched.
    const files = new Map<string, string | undefined>();
    const dirs = new Map<string, string[]>();
    const load = async (f: string) => {
        if (!files.has(f)) files.set(f, await v.read(f));
    };
    await load("/etc/ssh/sshd_config");
    for (let round = 0; round < 4; round++) {
        for (const text of [...files.values()]) {
            for (const m of (text ?? "").matchAll(/^\s*Include\s+(.+)$/gim)) {
                for (const pattern of m[1].trim().split(/\s+/)) {
                    const abs = pattern.startsWith("/") ? pattern : path.posix.join("/etc/ssh", pattern);
                    const dir = path.posix.dirname(abs);
                    if (!dirs.has(dir)) dirs.set(dir, (await v.list(dir)) ?? []);
                    const re = globToRegExp(path.posix.basename(abs));
                    for (const n of dirs.get(dir) ?? []) if (re.test(n)) await load(`${dir}/${n}`);
                }
            }
        }
    }
    return effectiveSshdConfig({
        read: (f) => files.get(f),
        glob: (pattern) => {
            const dir = path.posix.dirname(pattern);
            const re = globToRegExp(path.posix.basename(pattern));
            return (dirs.get(dir) ?? []).filter((n) => re.test(n)).sort().map((n) => `${dir}/${n}`);
        },
    });
}

async function sudoRules(v: ImageView): Promise<Array<{ file: string; text: string }>> {
    const rules: Array<{ file: string; text: string }> = [];
    const parse = (file: string, text: string) => {
        for (const raw of text.replace(/\\\n/g, " ").split("\n")) {
            const line = raw.trim();
            if (!line || (line.startsWith("#") && !/^#include/.test(line))) continue;
            rules.push({ file, text: line.replace(/\s+/g, " ") });
        }
    };
    const main = await v.read("/etc/sudoers");
    if (main) parse("/etc/sudoers", main);
    // sudo reads includedir files whose names have no dot and do not end in ~
    const dir = /^[#@]includedir\s+(\S+)/m.exec(main ?? "")?.[1] ?? "/etc/sudoers.d";
    for (const n of (await v.list(dir)) ?? []) {
        if (n.includes(".") || n.endsWith("~")) continue;
        const t = await v.read(`${dir}/${n}`);
        if (t) parse(`${dir}/${n}`, t);
    }
    return rules;
}

export async function runChecks(v: ImageView, expect: ValidateExpect): Promise<CheckResult[]> {
    const results: CheckResult[] = [];
    for (const c of CHECKS) {
        const na = expect.notApplicable?.[c.id];
        if (na) {
            results.push({ id: c.id, title: c.title, status: "skip", reason: `not applicable: ${na}` });
            continue;
        }
        try {
            results.push({ id: c.id, title: c.title, ...(await c.run(v, expect)) });
        } catch (err) {
            results.push({ id: c.id, title: c.title, status: "fail", reason: `could not be checked: ${(err as Error).message}`, fix: FIX.tools });
        }
    }
    return results;
}

/** Validates a qcow2 offline. Never throws for a bad image: the report says what failed and how to fix it. */
export async function validateQcow2(qcow2: string, expect: ValidateExpect, opts: { scratch?: string } = {}): Promise<ValidationReport> {
    const t0 = Date.now();
    const report = (checks: CheckResult[]): ValidationReport => ({
        schemaVersion: 1, image: expect.image, version: expect.version, qcow2, passed: checks.every((c) => c.status !== "fail"),
        startedAt: new Date(t0).toISOString(), durationMs: Date.now() - t0, tools: toolVersions(["qemu-img", "e2fsprogs"]), checks,
    });
    const missing = ["qemu-img", "debugfs"].filter((t) => !which(t));
    if (missing.length) {
        return report([{ id: "tools.available", title: "inspection tools", status: "fail",
            reason: `missing: ${missing.map((t) => `${t} (Debian package ${debianPackageOf(t)})`).join(", ")}`, fix: FIX.tools }]);
    }
    if (!path.isAbsolute(qcow2) || !fs.existsSync(qcow2) || !fs.statSync(qcow2).isFile()) {
        return report([{ id: "qcow2.path", title: "qcow2 path", status: "fail",
            reason: !path.isAbsolute(qcow2) ? `${JSON.stringify(qcow2)} is not an absolute path` : `no file at ${qcow2}`, fix: FIX.path }]);
    }
    let img: OfflineImage | undefined;
    if (opts.scratch) fs.mkdirSync(opts.scratch, { recursive: true });
    const scratch = fs.mkdtempSync(path.join(opts.scratch ?? os.tmpdir(), "if-validate-"));
    try {
        try {
            img = await OfflineImage.open(qcow2, { tmpDir: scratch });
        } catch (err) {
            return report([{ id: "qcow2.readable", title: "qcow2 is readable", status: "fail", reason: (err as Error).message,
                fix: "check that the file is a complete qcow2 or raw disk image with an ext4 root file system (qemu-img check)" }]);
        }
        const checks: CheckResult[] = [{ id: "qcow2.readable", title: "qcow2 is readable", status: "pass",
            reason: `root file system: partition ${img.partition.index} (${img.partition.scheme}), ${Math.round(img.partition.size / 2 ** 20)} MiB` }];
        checks.push(...(await runChecks(await qcow2View(img, scratch), expect)));
        return report(checks);
    } finally {
        img?.close();
        fs.rmSync(scratch, { recursive: true, force: true });
    }
}

export function formatReport(r: ValidationReport): string {
    const lines = [`validation of ${r.image} ${r.version} (${r.qcow2}): ${r.passed ? "PASSED" : "FAILED"}`];
    for (const c of r.checks) {
        lines.push(`  ${c.status.toUpperCase()}  ${c.id.padEnd(30)} ${c.reason}`);
        if (c.fix) lines.push(`        fix: ${c.fix}`);
    }
    return lines.join("\n");
}
