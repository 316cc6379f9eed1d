// Versions of the tools that shape an image: part of its build key and of its build.json.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { cacheRoot } from "./cacheRoot";

// Memo of this process (the persisted answers are below).
const cache: Record<string, string> = {};

function firstLine(cmd: string, args: string[]): string {
    try {
        const out = execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
        return out.split("\n").find((l) => l.trim())?.trim() ?? "unknown";
    } catch (err) {
        const e = err as { code?: string; stderr?: string; stdout?: string };
        if (e.code === "ENOENT") return "missing";
        return (e.stdout || e.stderr || "").split("\n").find((l) => l.trim())?.trim() ?? "unknown";
    }
}

function debVersion(pkg: string): string {
    const v = firstLine("dpkg-query", ["-W", "-f=${Version}", pkg]);
    return v.startsWith("dpkg-query") ? "missing" : v;
}

function statKey(file: string): string {
    try {
        const st = fs.statSync(file);
        return `${file}:${st.size}:${st.mtimeMs}:${st.ino}`;
    } catch {
        return `${file}:missing`;
    }
}

/** The executable `cmd` names on PATH, identified by path, size, mtime and inode. */
function executableKey(cmd: string): string {
    for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
        if (!dir) continue;
        const p = path.join(dir, cmd);
        try {
            if (fs.statSync(p).isFile()) return statKey(p);
        } catch {
            // not in this directory
        }
    }
    return `${cmd}:missing`;
}

// dpkg's status file changes with every package install, upgrade or removal.
const DPKG_STATUS = "/var/lib/dpkg/status";
const deb = (pkg: string) => ({ key: () => statKey(DPKG_STATUS), probe: () => debVersion(pkg) });
const exe = (cmd: string, args: string[]) => ({ key: () => `${executableKey(cmd)} ${statKey(DPKG_STATUS)}`, probe: () => firstLine(cmd, args) });

const PROBES: Record<string, { key: () => string; probe: () => string }> = {
    mmdebstrap: deb("mmdebstrap"),
    "qemu-img": exe("qemu-img", ["--version"]),
    e2fsprogs: deb("e2fsprogs"),
    "ansible-core": exe("ansible-playbook", ["--version"]),
    fdisk: deb("fdisk"),
    packer: exe("packer", ["version"]),
    xorriso: deb("xorriso"),
    "xz-utils": deb("xz-utils"),
    "qemu-user-static": deb("qemu-user-static"),
};

// Running the probes costs ~0.9 s (ansible-playbook --version alone ~0.7 s) in every plan, so in every no-op
// `pulumi up` and preview. Their answers are kept per user, keyed by what would change them (the executable's
// identity, dpkg's status file); any change there probes again.
function persistedFile(): string {
    return path.join(cacheRoot(), "tool-versions.json");
}

function readPersisted(file: string): Record<string, { key: string; version: string }> {
    try {
        return JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, { key: string; version: string }>;
    } catch {
        return {};
    }
}

export function toolVersion(tool: string): string {
    if (!(tool in cache)) {
        const probe = PROBES[tool];
        if (!probe) throw new Error(`no version probe for ${tool}`);
        const file = persistedFile();
        const persisted = readPersisted(file);
        const key = probe.key();
        if (persisted[tool]?.key === key) {
            cache[tool] = persisted[tool].version;
        } else {
            cache[tool] = probe.probe();
            try {
                fs.mkdirSync(path.dirname(file), { recursive: true });
                const tmp = `${file}.${process.pid}.partial`;
                fs.writeFileSync(tmp, JSON.stringify({ ...readPersisted(file), [tool]: { key, version: cache[tool] } }, null, 1));
                fs.renameSync(tmp, file);
            } catch {
                // A read-only cache only costs the probe next time.
            }
        }
    }
    return cache[tool];
}

export function toolVersions(tools: readonly string[]): Record<string, string> {
    return Object.fromEntries([...tools].sort().map((t) => [t, toolVersion(t)]));
}
