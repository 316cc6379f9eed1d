// lib/atomic.ts explainFsError: a failed write's errno as a message that names the file and the fix.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { explainFsError } from "../../lib/atomic";

const errno = (code: string, p?: string, syscall?: string) => Object.assign(new Error(code), { code, path: p, syscall });

describe("explainFsError", () => {
    it("names the file the errno is about, inside the directory the caller wrote to", () => {
        const e = explainFsError(errno("EACCES", "/w/builds/x/work/root/etc/machine-id", "open"), "/w/builds/x");
        assert.equal(e.message, `permission denied (open) on /w/builds/x/work/root/etc/machine-id (in /w/builds/x): make it writable by this user (uid ${process.getuid?.()})`);
        assert.match(explainFsError(errno("EPERM", "/w/a"), "/w/a").message, /^permission denied on \/w\/a: make it writable/);
    });

    it("a full disk names the device's directory and the free bytes; a read-only one says so; others pass through", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-atomic-"));
        try {
            assert.match(explainFsError(errno("ENOSPC"), dir, 10).message, new RegExp(`^no space left on the device holding ${dir} \\(10 bytes needed, \\d+ free\\)`));
            assert.match(explainFsError(errno("EROFS"), dir).message, /is on a read-only file system: choose a writable directory/);
            const other = errno("EIO");
            assert.equal(explainFsError(other, dir), other);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
