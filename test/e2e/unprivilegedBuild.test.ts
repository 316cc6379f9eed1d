// @slow (issue 35): the rootfs builder without root. The same build of the local stack's first image, as root and
// as an ordinary user (IMAGE_FACTORY_TEST_BUILD_USER, with /etc/subuid and /etc/subgid ranges; .ci/run makes one),
// gives the same bytes; a user build killed halfway leaves no process and no mount behind, and the next one
// converges. Run as root (it drops to the user with setpriv); skipped, and saying so, when no build user is named.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildOnce, buildPiOnce, userBuild } from "../../bench/buildAs";
import { piBaseImage } from "../helpers/piBase";
import type { BuildResult } from "../../lib/stages/pipeline";
import { idMapFor } from "../../lib/stages/namespace";

/** Live processes (not zombies waiting to be reaped) running as the user or as any id of its subordinate range. */
function processesOf(uid: number, sub: { outer: number; count: number }): string[] {
    const out: string[] = [];
    for (const p of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
        try {
            const status = fs.readFileSync(`/proc/${p}/status`, "utf8");
            const u = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
            if (/^State:\s+Z/m.test(status)) continue;
            if (u === uid || (u >= sub.outer && u < sub.outer + sub.count)) out.push(`${p} ${/^Name:\s+(.*)$/m.exec(status)?.[1]}: ${fs.readFileSync(`/proc/${p}/cmdline`, "utf8").replace(/\0/g, " ")}`);
        } catch {
            /* gone */
        }
    }
    return out;
}

describe("builds without root (issue 35): rootfs and Raspberry Pi", function () {
    this.timeout(20 * 60_000);
    const user = process.env.IMAGE_FACTORY_TEST_BUILD_USER;
    let tmp: string;
    let root: BuildResult;

    before(async function () {
        if (!user || process.getuid?.() !== 0) {
            console.log("      (skipped: run as root with IMAGE_FACTORY_TEST_BUILD_USER=<an ordinary user with subordinate ids>; .ci/run does)");
            this.skip();
        }
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-unpriv-"));
        fs.chmodSync(tmp, 0o755); // each test's user build passes through it (mkdtemp's 0700 would keep the user out)
        root = await buildOnce(path.join(tmp, "root"), path.join(tmp, "root-cache"), "root");
    });
    after(() => {
        if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("a user build killed halfway leaves nothing running or mounted; the next run builds the same bytes as root", async () => {
        const u = userBuild(user!, tmp, path.join(tmp, "root-cache"));
        const sub = idMapFor({ uid: u.uid, gid: u.gid, user: user!, subuid: fs.readFileSync("/etc/subuid", "utf8"), subgid: fs.readFileSync("/etc/subgid", "utf8") }).uid[1];

        // Killed (SIGKILL, as a power loss of the program would be) while apt installs inside its namespace.
        let sawApt = false;
        const first = u.start((l) => {
            if (!sawApt && /install \d+ packages with apt…/.test(l)) {
                sawApt = true;
                setTimeout(() => first.kill("SIGKILL"), 5000);
            }
        });
        const r1 = await first.then(() => undefined, (e: { signal?: string }) => e);
        assert.ok(sawApt, "the first build reached apt");
        assert.equal(r1?.signal, "SIGKILL");
        // The kernel ends a PID namespace's processes when its first one dies; give it a few seconds to finish.
        let left = processesOf(u.uid, sub);
        for (let i = 0; i < 50 && left.length; i++) {
            await new Promise((r) => setTimeout(r, 100));
            left = processesOf(u.uid, sub);
        }
        assert.deepEqual(left, [], "processes of the killed build still run");
        assert.equal(fs.readFileSync("/proc/self/mountinfo", "utf8").includes(tmp), false, "something is still mounted below the build");

        const { stdout } = await u.start();
        const mine = JSON.parse(stdout) as BuildResult;
        assert.equal(mine.buildKey, root.buildKey, "the same inputs give the same build key, whoever builds");
        assert.equal(mine.sha256, root.sha256, "root's and the user's builds differ");
        assert.equal(mine.size, root.size);
        assert.equal(fs.statSync(mine.path).uid, u.uid, "the image belongs to the user");
        const log = fs.readFileSync(mine.logPath, "utf8");
        // the killed run kept its minbase tree (it had got to apt), which this one unpacks: both as the tree's root
        assert.match(log, /^\S+ \$ \[build namespace\] (mmdebstrap --mode=root --variant=minbase|tar --extract)/m);
        assert.match(log, /^\S+ \$ \[build namespace, mounts in \S+\/work\/root\] chroot \S+ apt-get /m);
        assert.equal(fs.existsSync(path.join(path.dirname(mine.path), "work")), false, "the work tree was removed");
        assert.deepEqual(processesOf(u.uid, sub), []);
        // Nothing of the user's is left owned by another id: a plain rm -rf as the user clears it all.
        const foreign = (await execa("find", [u.home, "!", "-uid", String(u.uid), "-printf", "%u %p\n"])).stdout.trim();
        assert.equal(foreign, "", "files in the user's directories owned by other ids");
    });

    it("a Raspberry Pi image (sdr-pi, from one base file, without its playbook) is the same bytes built by root and by the user", async () => {
        const base = await piBaseImage();
        const mine = path.join(tmp, "pi-user");
        fs.mkdirSync(mine);
        const u = userBuild(user!, mine);
        const [asRoot, asUser] = [await buildPiOnce(path.join(tmp, "pi-root"), base, "root", { playbook: false }), JSON.parse((await u.start(undefined, base)).stdout) as BuildResult];
        assert.equal(asUser.buildKey, asRoot.buildKey);
        assert.equal(asUser.sha256, asRoot.sha256, "root's and the user's Pi images differ");
        assert.equal(fs.statSync(asUser.path).uid, u.uid);
        const log = fs.readFileSync(asUser.logPath, "utf8");
        assert.match(log, /^\S+ \$ \[build namespace\] bash -c "set -eo pipefail\\n\s+img=\$1 off=\$2 mnt=\$3 root=\$4 acls=\$5 fs=\$6; shift 6\\n\s+fuse2fs -o ro,fakeroot/m);
        assert.match(log, /^\S+ \$ \[build namespace\] mkfs\.ext4 -q -F /m);
        assert.doesNotMatch(log, /losetup|\$ mount /);
        const foreign = (await execa("find", [u.home, "!", "-uid", String(u.uid), "-printf", "%u %p\n"])).stdout.trim();
        assert.equal(foreign, "", "files in the user's directories owned by other ids");
    });
});
