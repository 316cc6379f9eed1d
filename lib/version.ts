// Artifact versions: vYYYY.MM.DD from the build date (UTC), vYYYY.MM.DD.N for the N-th other build that day.
import { VERSION_PATTERN } from "./config";

export function dateVersion(date: Date): string {
    const p = (n: number) => String(n).padStart(2, "0");
    return `v${date.getUTCFullYear()}.${p(date.getUTCMonth() + 1)}.${p(date.getUTCDate())}`;
}

/** The first free version for a build made at `date`, given the versions already taken by other builds. */
export function nextVersion(date: Date, taken: Iterable<string>): string {
    const base = dateVersion(date);
    const used = new Set(taken);
    if (!used.has(base)) return base;
    for (let n = 1; ; n++) {
        const v = `${base}.${n}`;
        if (!used.has(v)) return v;
    }
}

export function assertVersion(v: string): string {
    if (!VERSION_PATTERN.test(v)) throw new Error(`invalid version ${JSON.stringify(v)}: must look like vYYYY.MM.DD or vYYYY.MM.DD.N`);
    const [y, m, d] = v.slice(1).split(".").map(Number);
    const date = new Date(Date.UTC(y, m - 1, d));
    if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) {
        throw new Error(`invalid version ${JSON.stringify(v)}: ${y}-${m}-${d} is not a calendar date`);
    }
    return v;
}

/**
 * A version for a local runbook build (seed 002: `make image.local.full … VERSION=v1`): a release version as above, or
 * v<N> (v1, v2, …). Such builds are never published, so the release rule (the tag names the build's date) does not
 * bind them; everything a lab stack publishes still takes assertVersion.
 */
export function assertRunbookVersion(v: string): string {
    if (/^v[1-9][0-9]{0,5}$/.test(v)) return v;
    try {
        return assertVersion(v);
    } catch (e) {
        throw new Error(`${(e as Error).message}, or v<N> (v1, v2, …) for a local runbook build`);
    }
}

/** Sort order of versions: by date, then by suffix (v2026.01.02 < v2026.01.02.1 < v2026.01.10). */
export function compareVersions(a: string, b: string): number {
    const pa = a.slice(1).split(".").map(Number);
    const pb = b.slice(1).split(".").map(Number);
    for (let i = 0; i < 4; i++) {
        const d = (pa[i] ?? -1) - (pb[i] ?? -1);
        if (d !== 0) return d;
    }
    return 0;
}
