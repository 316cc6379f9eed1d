// Atomic file writes: every file we publish appears whole or not at all (<file>.partial, fsync, rename).
import * as fs from "node:fs";
import * as path from "node:path";

export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const partial = `${file}.partial`;
    try {
        const fh = await fs.promises.open(partial, "w", mode);
        try {
            await fh.writeFile(data);
            await fh.sync();
        } finally {
            await fh.close();
        }
        await fs.promises.rename(partial, file);
    } catch (err) {
        await fs.promises.rm(partial, { force: true });
        throw explainFsError(err, file, typeof data === "string" ? Buffer.byteLength(data) : data.byteLength);
    }
}

/** Writes the file only when its content differs, so unchanged metadata keeps its mtime and git stays quiet. */
export async function writeFileIfChanged(file: string, data: string): Promise<boolean> {
    try {
        if ((await fs.promises.readFile(file, "utf8")) === data) return false;
    } catch {
        /* missing: write it */
    }
    await writeFileAtomic(file, data);
    return true;
}

/** Free bytes for an unprivileged writer on the file system holding `p` (or its nearest existing parent). */
export function freeBytes(p: string): number | undefined {
    for (let dir = p; ; dir = path.dirname(dir)) {
        try {
            const st = fs.statfsSync(dir);
            return st.bavail * st.bsize;
        } catch {
            if (dir === path.dirname(dir)) return undefined;
        }
    }
}

/** What to do about a full disk, said the same way wherever one is found. */
export const FREE_SPACE_ADVICE = "free space (or point factory:workDir / factory:artifactStore.root / factory:baseImageCache at a larger disk) and run again";

/**
 * Throws before a write of `need` bytes into `dir` that cannot fit, naming the directory, the bytes needed and free:
 * failing up front leaves nothing half-written.
 */
export function ensureFreeSpace(dir: string, need: number, what: string): void {
    const free = freeBytes(dir);
    if (free !== undefined && free < need) {
        throw new Error(`not enough free space in ${dir} for ${what}: ${need} bytes needed, ${free} free: ${FREE_SPACE_ADVICE}; nothing was published`);
    }
}

/**
 * Turns the errno of a failed write into a message that names the fix. `need`: the bytes the failed write wanted,
 * when known, so the message can say how far off it was.
 */
export function explainFsError(err: unknown, file: string, need?: number): Error {
    const e = err as NodeJS.ErrnoException;
    switch (e?.code) {
        case "ENOSPC": {
            const free = freeBytes(file);
            const figures = [need !== undefined ? `${need} bytes needed` : "", free !== undefined ? `${free} free` : ""].filter(Boolean).join(", ");
            return new Error(`no space left on the device holding ${file}${figures ? ` (${figures})` : ""}: ${FREE_SPACE_ADVICE}; nothing was published`);
        }
        case "EACCES":
        case "EPERM": {
            // The errno's own path first: a build fails on a file deep inside `file`, and the fix is for that one.
            const where = e.path && e.path !== file ? `${e.path} (in ${file})` : file;
            return new Error(`permission denied${e.syscall ? ` (${e.syscall})` : ""} on ${where}: make it writable by this user (uid ${process.getuid?.()})`);
        }
        case "EROFS":
            return new Error(`${file} is on a read-only file system: choose a writable directory`);
        default:
            return e instanceof Error ? e : new Error(String(err));
    }
}

/** `to` as a hard link of `from`, or a copy where a link cannot be made (another file system): the source is never touched. */
export function linkOrCopy(from: string, to: string): void {
    try {
        fs.linkSync(from, to);
    } catch {
        fs.copyFileSync(from, to);
    }
}
