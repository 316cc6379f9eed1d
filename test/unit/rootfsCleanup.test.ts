// lib/stages/rootfs.ts cleanup(): what is per machine or per build leaves the image root.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BuildLog } from "../../lib/buildlog";
import { Chroot } from "../../lib/stages/chroot";
import { cleanup } from "../../lib/stages/rootfs";

describe("rootfs cleanup", () => {
    it("drops the build host's resolver file, host keys, machine identity and logs, and clamps every time", async () => {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rootfs-cleanup-"));
        try {
            const root = path.join(tmp, "root");
            const put = (rel: string, text: string, mode = 0o644) => {
                fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
                fs.writeFileSync(path.join(root, rel), text, { mode });
            };
            put("etc/resolv.conf", "nameserver 192.0.2.53\nsearch builder.example\n", 0o755); // as copied from a host
            put("etc/ssh/ssh_host_ed25519_key", "secret");
            put("etc/ssh/sshd_config", "PasswordAuthentication no\n");
            put("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
            put("var/log/apt/history.log", "Start-Date: today\n");
            put("var/lib/apt/lists/deb_dists_bookworm_InRelease", "x");
            for (const d of ["var/cache/apt/archives", "tmp", "var/tmp", "run"]) fs.mkdirSync(path.join(root, d), { recursive: true });
            const epoch = 1_700_000_000;
            await cleanup(new Chroot(root, new BuildLog(path.join(tmp, "build.log"), "test")), epoch);

            const resolv = fs.statSync(path.join(root, "etc/resolv.conf"));
            assert.equal(fs.readFileSync(path.join(root, "etc/resolv.conf"), "utf8"), "", "the host's resolver configuration stayed");
            assert.equal(resolv.mode & 0o777, 0o644);
            assert.deepEqual(fs.readdirSync(path.join(root, "etc/ssh")), ["sshd_config"]);
            assert.equal(fs.readFileSync(path.join(root, "etc/machine-id"), "utf8"), "");
            assert.equal(fs.statSync(path.join(root, "var/log/apt/history.log")).size, 0);
            assert.deepEqual(fs.readdirSync(path.join(root, "var/lib/apt/lists")), ["partial"]);
            assert.equal(resolv.mtimeMs / 1000, epoch);
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true });
        }
    });
});
