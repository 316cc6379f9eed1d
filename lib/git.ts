// Traceability: which commit of this repository an artifact was built from.
import { execFileSync } from "node:child_process";

/**
 * What the factory itself writes into the checkout after publishing (release records, manifests, the changelog): not
 * inputs of any image, so changes there do not make a tree dirty. scripts/ci/up.sh brings them up to date from the
 * default branch before a run and commits them after it.
 */
export const RELEASE_METADATA_PATHS = ["releases", "manifests", "docs/releases.md"] as const;

export interface GitInfo {
    commit: string;
    /** Uncommitted changes in the tree the build read (release metadata aside). */
    dirty: boolean;
    commitTime?: number;
}

export function gitInfo(dir: string): GitInfo {
    try {
        const opts = { cwd: dir, encoding: "utf8" as const, stdio: ["ignore", "pipe", "ignore"] as ["ignore", "pipe", "ignore"] };
        const commit = execFileSync("git", ["rev-parse", "HEAD"], opts).trim();
        const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no", "--", ".", ...RELEASE_METADATA_PATHS.map((p) => `:(exclude)${p}`)], opts).trim().length > 0;
        const commitTime = Number(execFileSync("git", ["log", "-1", "--format=%ct"], opts).trim());
        return { commit, dirty, commitTime };
    } catch {
        return { commit: "unknown", dirty: false };
    }
}

/** The origin remote as an https URL (for org.opencontainers.image.source), or undefined. */
export function gitRemoteUrl(dir: string): string | undefined {
    try {
        const url = execFileSync("git", ["config", "--get", "remote.origin.url"], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
        if (!url) return undefined;
        const ssh = /^git@([^:]+):(.+?)(\.git)?$/.exec(url);
        if (ssh) return `https://${ssh[1]}/${ssh[2]}`;
        return /^https?:\/\//.test(url) ? url.replace(/\.git$/, "").replace(/\/\/[^@/]+@/, "//") : undefined;
    } catch {
        return undefined;
    }
}
