// Effective sshd settings as sshd itself computes them: Include directives expanded in place (globs sorted),
// the first value of a keyword wins, and Match blocks recorded separately because they override per connection.
import * as path from "node:path";

export interface SshdSource {
    /** File content, or undefined when the file does not exist. */
    read(file: string): string | undefined;
    /** Files matching a glob's last component (directory part literal), sorted. */
    glob(pattern: string): string[];
}

export interface SshdDirective {
    keyword: string; // lower case
    value: string;
    file: string;
    line: number;
    /** The Match condition the directive is under, if any. */
    match?: string;
}

export interface EffectiveSshd {
    /** Global value of each keyword: the first one sshd reads. */
    global: Map<string, SshdDirective>;
    /** Directives inside Match blocks (they apply to matching connections only). */
    matched: SshdDirective[];
    files: string[];
}

export const SSHD_DEFAULTS: Record<string, string> = {
    passwordauthentication: "yes",
    permitrootlogin: "prohibit-password",
    kbdinteractiveauthentication: "yes",
    pubkeyauthentication: "yes",
};

export function globToRegExp(glob: string): RegExp {
    const esc = glob.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]");
    return new RegExp(`^${esc}$`);
}

export function effectiveSshdConfig(src: SshdSource, mainFile = "/etc/ssh/sshd_config"): EffectiveSshd {
    const out: EffectiveSshd = { global: new Map(), matched: [], files: [] };
    let match: string | undefined;
    const visit = (file: string, depth: number) => {
        if (depth > 16) throw new Error(`sshd Include nesting too deep at ${file}`);
        const text = src.read(file);
        if (text === undefined) return;
        out.files.push(file);
        text.split("\n").forEach((raw, i) => {
            const line = raw.replace(/#.*/, "").trim();
            if (!line) return;
            const m = /^(\S+)\s*(?:=\s*|\s+)(.*)$/.exec(line);
            if (!m) return;
            const keyword = m[1].toLowerCase();
            const value = m[2].trim().replace(/^"(.*)"$/, "$1");
            if (keyword === "include") {
                // A Match block opened inside an included file ends with that file (OpenSSH 8.2+).
                const outer = match;
                for (const pattern of value.split(/\s+/)) {
                    const abs = pattern.startsWith("/") ? pattern : path.posix.join("/etc/ssh", pattern);
                    for (const f of src.glob(abs)) {
                        visit(f, depth + 1);
                        match = outer;
                    }
                }
                return;
            }
            if (keyword === "match") {
                match = value.toLowerCase() === "all" ? undefined : value;
                return;
            }
            const d: SshdDirective = { keyword, value, file, line: i + 1, match };
            if (match) out.matched.push(d);
            else if (!out.global.has(keyword)) out.global.set(keyword, d);
        });
    };
    visit(mainFile, 0);
    return out;
}

/** The effective global value of a keyword, falling back to sshd's built-in default. */
export function sshdValue(cfg: EffectiveSshd, keyword: string): { value: string; where: string } {
    const d = cfg.global.get(keyword.toLowerCase());
    if (d) return { value: d.value.toLowerCase(), where: `${d.file}:${d.line}` };
    return { value: SSHD_DEFAULTS[keyword.toLowerCase()] ?? "", where: "sshd default" };
}
