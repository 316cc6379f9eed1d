// Versions of the tools that shape an image: part of its build key and of its build.json.
import { execFileSync } from "node:child_process";

// A plain object, not a Map: this module is serialized into dynamic providers, and captured Maps lose their methods.
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

const PROBES: Record<string, () => string> = {
    debootstrap: () => debVersion("debootstrap"),
    "qemu-img": () => firstLine("qemu-img", ["--version"]),
    e2fsprogs: () => debVersion("e2fsprogs"),
    "ansible-core": () => firstLine("ansible-playbook", ["--version"]),
    fdisk: () => debVersion("fdisk"),
    packer: () => firstLine("packer", ["version"]),
    xorriso: () => debVersion("xorriso"),
    "qemu-user-static": () => debVersion("qemu-user-static"),
};

export function toolVersion(tool: string): string {
    if (!(tool in cache)) {
        const probe = PROBES[tool];
        if (!probe) throw new Error(`no version probe for ${tool}`);
        cache[tool] = probe();
    }
    return cache[tool];
}

export function toolVersions(tools: readonly string[]): Record<string, string> {
    return Object.fromEntries([...tools].sort().map((t) => [t, toolVersion(t)]));
}
