// Secrets never reach logs or evidence: known secret values are replaced, and token-shaped strings are masked
// even when nobody told us they were secret.
const TOKEN_PATTERNS: RegExp[] = [
    /\bgh[pousr]_[A-Za-z0-9]{20,}\b/g, // GitHub tokens (classic, OAuth, user-to-server, server-to-server, refresh)
    /\bgithub_pat_[A-Za-z0-9_]{20,}\b/g, // GitHub fine-grained tokens
    /\b(PVEAPIToken=)[^\s"']+/g, // Proxmox API token headers
    /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, // Authorization header values
    /\b([A-Z0-9_]*(TOKEN|PASSWORD|PASSPHRASE|SECRET)[A-Z0-9_]*=)[^\s"']+/g, // NAME_TOKEN=value in env dumps
];

export const REDACTED = "[REDACTED]";

export function redact(text: string, secrets: readonly string[] = []): string {
    let out = text;
    for (const s of secrets) {
        if (s && s.length >= 4) out = out.split(s).join(REDACTED);
    }
    for (const re of TOKEN_PATTERNS) {
        out = out.replace(re, (match: string, prefix?: string) =>
            typeof prefix === "string" && match.startsWith(prefix) && prefix.length < match.length ? `${prefix}${REDACTED}` : REDACTED);
    }
    return out;
}

/** Secret-looking values of an environment: what a build must never write down. */
export function secretsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
    return Object.entries(env)
        .filter(([k, v]) => v && /(TOKEN|PASSWORD|PASSPHRASE|SECRET|API_KEY)/i.test(k))
        .map(([, v]) => v as string);
}
