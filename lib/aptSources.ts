// The machine's configured Debian mirror (from APT's sources), used when the stack does not name one: builds
// then reach exactly the package mirror this machine is set up for, and no address is written into the code.
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, type FactoryConfig } from "./config";

/** Where a build's Debian packages come from (factory:debian, else this machine's apt sources). */
export interface DebianSource {
    suite: string;
    mirror: string;
    securityMirror: string;
    snapshot?: string;
    snapshotBase?: string;
}

export interface AptEntry {
    uris: string[];
    suites: string[];
    components: string[];
}

/** Entries of one-line (.list) and deb822 (.sources) files; only `deb` types. */
export function parseAptSources(text: string, deb822: boolean): AptEntry[] {
    const out: AptEntry[] = [];
    if (deb822) {
        for (const stanza of text.split(/\n\s*\n/)) {
            const fields: Record<string, string> = {};
            for (const line of stanza.split("\n")) {
                if (line.startsWith("#")) continue;
                const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
                if (m) fields[m[1].toLowerCase()] = m[2].trim();
            }
            if (!(fields.types ?? "").split(/\s+/).includes("deb") || fields.enabled === "no") continue;
            out.push({ uris: (fields.uris ?? "").split(/\s+/).filter(Boolean), suites: (fields.suites ?? "").split(/\s+/).filter(Boolean),
                components: (fields.components ?? "").split(/\s+/).filter(Boolean) });
        }
    } else {
        for (const raw of text.split("\n")) {
            const line = raw.replace(/#.*/, "").trim();
            const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
            if (m) out.push({ uris: [m[1]], suites: [m[2]], components: m[3].split(/\s+/).filter(Boolean) });
        }
    }
    return out;
}

export function readAptSources(etcApt = "/etc/apt"): AptEntry[] {
    const files: Array<[string, boolean]> = [];
    if (fs.existsSync(path.join(etcApt, "sources.list"))) files.push([path.join(etcApt, "sources.list"), false]);
    const dir = path.join(etcApt, "sources.list.d");
    if (fs.existsSync(dir)) {
        for (const f of fs.readdirSync(dir).sort()) {
            if (f.endsWith(".list")) files.push([path.join(dir, f), false]);
            else if (f.endsWith(".sources")) files.push([path.join(dir, f), true]);
        }
    }
    return files.flatMap(([f, deb822]) => parseAptSources(fs.readFileSync(f, "utf8"), deb822));
}

/** The mirror serving `<suite>` main, and the one serving `<suite>-security` main. */
export function debianMirrors(entries: AptEntry[], suite: string): { mirror?: string; securityMirror?: string } {
    const find = (s: string) => entries.find((e) => e.suites.includes(s) && e.components.includes("main"))?.uris[0]?.replace(/\/+$/, "");
    return { mirror: find(suite), securityMirror: find(`${suite}-security`) };
}

/** The Debian archives builds use: the stack's (factory:debian), else the ones this machine's APT sources name. */
export function resolveDebianSource(d: FactoryConfig["debian"], needed: boolean, entries: () => AptEntry[] = () => readAptSources()): DebianSource {
    const detected = d.mirror && d.securityMirror ? {} : debianMirrors(entries(), d.suite);
    const mirror = d.mirror ?? detected.mirror;
    const securityMirror = d.securityMirror ?? detected.securityMirror;
    if (needed && (!mirror || !securityMirror)) {
        throw new ConfigError([`factory:debian.mirror / securityMirror: not set, and /etc/apt names no "${d.suite}" and "${d.suite}-security" main archives to take them from; set them to your Debian mirror's URLs`]);
    }
    return { suite: d.suite, mirror: mirror ?? "", securityMirror: securityMirror ?? "", snapshot: d.snapshot, snapshotBase: d.snapshotBase };
}
