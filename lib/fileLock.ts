// A lock file (O_EXCL) around read-modify-write of shared files, e.g. release metadata written by several
// resources of one `pulumi up`. A lock whose owner process is gone is taken over.
import * as fs from "node:fs";

export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        try {
            fs.writeFileSync(lockPath, String(process.pid), { flag: "wx" });
            break;
        } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
            const owner = Number(fs.readFileSync(lockPath, "utf8"));
            let alive: boolean;
            try {
                process.kill(owner, 0);
                alive = true;
            } catch {
                alive = false;
            }
            if (!alive) {
                fs.rmSync(lockPath, { force: true });
                continue;
            }
            if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockPath} (held by pid ${owner}); remove it if that process is gone`);
            await new Promise((r) => setTimeout(r, 50));
        }
    }
    try {
        return await fn();
    } finally {
        fs.rmSync(lockPath, { force: true });
    }
}
