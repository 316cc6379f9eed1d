// Evidence packets: what a build or a validation did, written so it can be verified later.
//   evidence/images/vm/<image>/<version>/<UTC>/{build,validate}/
// Every file of a packet is listed in its SHA256SUMS; with EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY=<id> the list gets a
// detached armored signature (SHA256SUMS.asc). Text is redacted before it is written: no secret lands here.
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "../atomic";
import { run } from "../exec";
import { redact, secretsFromEnv } from "../redact";
import { hashFile, parseSha256sums, sha256sumLine } from "../sha256";

export const SUMS = "SHA256SUMS";
export const SIGNATURE = "SHA256SUMS.asc";

export interface PacketFile {
    /** Path inside the packet (forward slashes). */
    name: string;
    /** Text or bytes; text is redacted. */
    content?: string | Buffer;
    /** Or a file to copy (text files are redacted too). */
    from?: string;
}

export interface SigningOptions {
    keyId: string;
    /** Goes to gpg on stdin (--passphrase-fd 0), never in argv. */
    passphrase?: string;
    gnupgHome?: string;
}

/** 2026-11-25T18:41:00.123Z -> 20261125T184100Z */
export function utcStamp(d: Date): string {
    return d.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

export function evidenceRunDir(root: string, image: string, version: string, when: Date, kind = "vm"): string {
    return path.join(root, "images", kind, image, version, utcStamp(when));
}

/** EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY=<id> [EVIDENCE_GPG_PASSPHRASE] [GNUPGHOME] */
export function signingFromEnv(env: NodeJS.ProcessEnv = process.env, passphrase?: string): SigningOptions | undefined {
    if (env.EVIDENCE_SIGN !== "1") return undefined;
    if (!env.EVIDENCE_GPG_KEY) throw new Error("EVIDENCE_SIGN=1 needs EVIDENCE_GPG_KEY=<key id> (see gpg --list-secret-keys)");
    return { keyId: env.EVIDENCE_GPG_KEY, passphrase: passphrase ?? env.EVIDENCE_GPG_PASSPHRASE, gnupgHome: env.GNUPGHOME };
}

function isText(buf: Buffer): boolean {
    return !buf.subarray(0, 8192).includes(0);
}

function listFiles(dir: string, rel = ""): string[] {
    const out: string[] = [];
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) out.push(...listFiles(dir, r));
        else out.push(r);
    }
    return out.sort();
}

export interface PacketResult {
    dir: string;
    files: string[];
    signed: boolean;
}

export async function writePacket(dir: string, files: PacketFile[], opts: { secrets?: string[]; sign?: SigningOptions } = {}): Promise<PacketResult> {
    if (fs.existsSync(path.join(dir, SUMS))) throw new Error(`evidence packet ${dir} already exists; packets are never overwritten`);
    const secrets = [...(opts.secrets ?? []), ...secretsFromEnv(), ...(opts.sign?.passphrase ? [opts.sign.passphrase] : [])];
    fs.mkdirSync(dir, { recursive: true });
    for (const f of files) {
        if (f.name.split("/").some((s) => s === ".." || s === "") || f.name === SUMS || f.name === SIGNATURE) throw new Error(`bad packet file name ${f.name}`);
        let data = f.content ?? (f.from ? fs.readFileSync(f.from) : undefined);
        if (data === undefined) throw new Error(`packet file ${f.name} has no content`);
        if (typeof data === "string") data = redact(data, secrets);
        else if (isText(data)) data = Buffer.from(redact(data.toString("utf8"), secrets));
        await writeFileAtomic(path.join(dir, f.name), data);
    }
    const names = listFiles(dir);
    let sums = "";
    for (const n of names) sums += sha256sumLine((await hashFile(path.join(dir, n))).sha256, n);
    await writeFileAtomic(path.join(dir, SUMS), sums);
    if (opts.sign) await signSums(dir, opts.sign);
    return { dir, files: names, signed: !!opts.sign };
}

async function signSums(dir: string, sign: SigningOptions): Promise<void> {
    await signFile(path.join(dir, SUMS), path.join(dir, SIGNATURE), sign);
}

/** A detached armored signature of `file` by the evidence key (the passphrase on stdin, never in argv). */
export async function signFile(file: string, output: string, sign: SigningOptions, what = "the evidence"): Promise<void> {
    const args = ["--batch", "--yes", "--armor", "--detach-sign", "--local-user", sign.keyId, "--output", output];
    if (sign.passphrase !== undefined) args.unshift("--pinentry-mode", "loopback", "--passphrase-fd", "0");
    await run("gpg", [...args, file], {
        input: sign.passphrase === undefined ? undefined : `${sign.passphrase}\n`,
        env: sign.gnupgHome ? { GNUPGHOME: sign.gnupgHome } : undefined,
        hint: `signing ${what} with key ${sign.keyId} failed: check EVIDENCE_GPG_KEY, the key's passphrase and GNUPGHOME`,
    });
}

export interface VerifyResult {
    ok: boolean;
    /** The first file that failed, and why. */
    failure?: { file: string; reason: string };
    checked: number;
    signature: "valid" | "absent" | "invalid";
}

/** Verifies a packet: every listed file has its digest, no file is unlisted, and the signature (if any) holds. */
export async function verifyPacket(dir: string, opts: { gnupgHome?: string } = {}): Promise<VerifyResult> {
    const fail = (file: string, reason: string, checked: number, signature: VerifyResult["signature"] = "absent"): VerifyResult =>
        ({ ok: false, failure: { file, reason }, checked, signature });
    if (!fs.existsSync(path.join(dir, SUMS))) return fail(SUMS, `no ${SUMS} in ${dir}`, 0);
    let sums: Map<string, string>;
    try {
        sums = parseSha256sums(fs.readFileSync(path.join(dir, SUMS), "utf8"));
    } catch (err) {
        return fail(SUMS, (err as Error).message, 0);
    }
    let signature: VerifyResult["signature"] = "absent";
    if (fs.existsSync(path.join(dir, SIGNATURE))) {
        try {
            await run("gpg", ["--batch", "--verify", path.join(dir, SIGNATURE), path.join(dir, SUMS)], { env: opts.gnupgHome ? { GNUPGHOME: opts.gnupgHome } : undefined });
            signature = "valid";
        } catch (err) {
            return fail(SIGNATURE, `signature does not verify: ${(err as Error).message.split("\n").slice(-3).join(" ").trim()}`, 0, "invalid");
        }
    }
    let checked = 0;
    for (const [name, want] of [...sums.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
        const p = path.join(dir, name);
        if (!fs.existsSync(p)) return fail(name, "listed in SHA256SUMS but missing", checked, signature);
        const got = (await hashFile(p)).sha256;
        if (got !== want) return fail(name, `sha256 ${got} does not match SHA256SUMS (${want})`, checked, signature);
        checked++;
    }
    const extra = listFiles(dir).find((n) => n !== SUMS && n !== SIGNATURE && !sums.has(n));
    if (extra) return fail(extra, "present in the packet but not listed in SHA256SUMS", checked, signature);
    return { ok: true, checked, signature };
}
