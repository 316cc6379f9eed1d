// lib/stages/namespace.ts: the build namespace every image-root command runs in (issue 35).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
    hostIds, idMapFor, namespaceBlockers, namespaceScript, nsRun, ROOT_FIRST_ID, subordinateRange, SUBORDINATE_IDS, UserNamespaceError,
} from "../../lib/stages/namespace";
import { reclaim } from "../../lib/stages/chroot";

const SUBUID = "# ranges\nalice:100000:65536\n1002:231072:65536\nshorty:300000:1000\n";

describe("build namespace: id maps", () => {
    it("reads the first range of a user by name or by number, as newuidmap does", () => {
        assert.deepEqual(subordinateRange(SUBUID, "alice", 1000), { start: 100000, count: 65536 });
        assert.deepEqual(subordinateRange(SUBUID, "bob", 1002), { start: 231072, count: 65536 }, "by uid");
        assert.equal(subordinateRange(SUBUID, "carol", 1003), undefined);
        assert.equal(subordinateRange("", "alice", 1000), undefined);
    });

    it("maps an ordinary user's own id to 0 and its subordinate range to 1..65536, through newuidmap", () => {
        const m = idMapFor({ uid: 1000, gid: 1000, user: "alice", subuid: SUBUID, subgid: SUBUID });
        assert.equal(m.direct, false);
        assert.deepEqual(m.uid, [{ inner: 0, outer: 1000, count: 1 }, { inner: 1, outer: 100000, count: SUBORDINATE_IDS }]);
        assert.deepEqual(m.gid, m.uid);
    });

    it("maps root to 0 and its /etc/subuid range (or the default) to 1..65536, written directly", () => {
        const none = idMapFor({ uid: 0, gid: 0, user: "root", subuid: SUBUID, subgid: SUBUID });
        assert.equal(none.direct, true);
        assert.deepEqual(none.uid, [{ inner: 0, outer: 0, count: 1 }, { inner: 1, outer: ROOT_FIRST_ID, count: SUBORDINATE_IDS }]);
        const own = idMapFor({ uid: 0, gid: 0, user: "root", subuid: "root:700000:65536\n", subgid: "root:800000:65536\n" });
        assert.equal(own.uid[1].outer, 700000);
        assert.equal(own.gid[1].outer, 800000);
    });

    it("refuses a user without a range, or with a short one, naming usermod", () => {
        assert.throws(() => idMapFor({ uid: 1003, gid: 1003, user: "carol", subuid: SUBUID, subgid: SUBUID }),
            (e: Error) => e instanceof UserNamespaceError && /carol has no subordinate uid range in \/etc\/subuid/.test(e.message) &&
                /usermod --add-subuids 100000-165535 --add-subgids 100000-165535 carol/.test(e.message));
        assert.throws(() => idMapFor({ uid: 1004, gid: 1004, user: "shorty", subuid: SUBUID, subgid: SUBUID }),
            /shorty's subordinate uid range in \/etc\/subuid has 1000 ids; a Debian tree uses 65536/);
        assert.throws(() => idMapFor({ uid: 1000, gid: 1000, user: "alice", subuid: SUBUID, subgid: "" }), /no subordinate gid range in \/etc\/subgid/);
    });

    it("names each switch that keeps user namespaces off, with its sysctl", () => {
        const proc = fs.mkdtempSync(path.join(os.tmpdir(), "if-proc-"));
        try {
            for (const [f, v] of [["user/max_user_namespaces", "0"], ["kernel/unprivileged_userns_clone", "0"], ["kernel/apparmor_restrict_unprivileged_userns", "1"]]) {
                fs.mkdirSync(path.dirname(path.join(proc, f)), { recursive: true });
                fs.writeFileSync(path.join(proc, f), `${v}\n`);
            }
            const user = namespaceBlockers({ uid: 1003, gid: 1003, user: "carol", subuid: SUBUID, subgid: SUBUID }, proc).join("\n");
            assert.match(user, /sysctl -w user\.max_user_namespaces=15000/);
            assert.match(user, /sysctl -w kernel\.unprivileged_userns_clone=1/);
            assert.match(user, /apparmor_restrict_unprivileged_userns = 1, as on Ubuntu 24\.04/);
            assert.match(user, /carol has no subordinate uid range/);
            // root needs neither the unprivileged switches nor a range of its own
            const root = namespaceBlockers({ uid: 0, gid: 0, user: "root", subuid: "", subgid: "" }, proc);
            assert.equal(root.length, 1, root.join("\n"));
            fs.writeFileSync(path.join(proc, "user/max_user_namespaces"), "15000\n");
            assert.deepEqual(namespaceBlockers({ uid: 0, gid: 0, user: "root", subuid: "", subgid: "" }, proc), []);
        } finally {
            fs.rmSync(proc, { recursive: true, force: true });
        }
    });

    it("mounts the kernel's file systems and only harmless device nodes, and binds what is asked, quoted", () => {
        const s = namespaceScript({ root: "/w/it's root/", binds: [{ source: "/cache/apt", target: "/var/cache/apt/archives" }] });
        assert.match(s, /^mount -t proc proc '\/w\/it'"'"'s root'\/proc$/m);
        assert.match(s, /^mount --rbind \/sys '\/w\/it'"'"'s root'\/sys$/m);
        assert.match(s, /^for d in null zero full random urandom tty; do/m);
        assert.doesNotMatch(s, /--rbind \/dev|--bind \/dev /, "never the host's whole /dev");
        assert.match(s, /^mount --bind '\/cache\/apt' '\/w\/it'"'"'s root'\/'var\/cache\/apt\/archives'$/m);
        assert.equal(namespaceScript(), 'set -e\nexec "$@"');
    });
});

describe("build namespace: real namespaces", function () {
    this.timeout(30_000);
    let tmp: string;
    beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-ns-")); });
    afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it("runs as root of the namespace and its files belong to the mapped ids outside", async () => {
        const map = idMapFor(hostIds());
        const { stdout } = await nsRun(["sh", "-c", `id -u; touch "$1/a" "$1/b"; chown 100:42 "$1/b"; stat -c %u:%g "$1/b"`, "sh", tmp]);
        assert.equal(stdout, "0\n100:42\n");
        assert.equal(fs.statSync(path.join(tmp, "a")).uid, map.uid[0].outer, "inner root is the caller outside");
        assert.equal(fs.statSync(path.join(tmp, "b")).uid, map.uid[1].outer + 99, "inner 100 is the subordinate range's 100th id");
        assert.equal(fs.statSync(path.join(tmp, "b")).gid, map.gid[1].outer + 41);
    });

    it("keeps its mounts inside: a tmpfs mounted in the namespace is gone from the host, during and after", async () => {
        const root = path.join(tmp, "root");
        for (const d of ["proc", "sys", "dev", "mnt"]) fs.mkdirSync(path.join(root, d), { recursive: true });
        fs.mkdirSync(path.join(tmp, "cache"));
        fs.writeFileSync(path.join(tmp, "cache", "pkg.deb"), "deb");
        const { stdout } = await nsRun(["sh", "-c", 'ls "$1/mnt"; ls "$1/dev" | tr "\\n" " "; echo; head -c 4 "$1/dev/zero" | od -An -tx1; grep -c " $1/" /proc/self/mountinfo', "sh", root],
            { mounts: { root, binds: [{ source: path.join(tmp, "cache"), target: "mnt" }] } });
        const [bound, devs, zero, count] = stdout.trim().split("\n");
        assert.equal(bound, "pkg.deb", "the bind mount was there for the command");
        assert.deepEqual(devs.trim().split(" ").sort(), ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]);
        assert.equal(zero.trim(), "00 00 00 00");
        assert.ok(Number(count) >= 5, `mounts inside: ${count}`);
        assert.equal(fs.readFileSync("/proc/self/mountinfo", "utf8").includes(root), false, "nothing mounted on the host");
        assert.deepEqual(fs.readdirSync(path.join(root, "dev")), [], "the tree's /dev untouched");
        assert.deepEqual(fs.readdirSync(path.join(root, "mnt")), []);
    });

    it("cannot make device nodes, whoever runs it (the same tree for root and for a user)", async () => {
        await assert.rejects(nsRun(["mknod", path.join(tmp, "null"), "c", "1", "3"]), /^CommandError: \[build namespace\] mknod [\s\S]*(Operation not permitted|Permission denied)/);
    });

    it("a stopped command takes every process it started with it", async () => {
        const n = 600_000 + Math.floor(Math.random() * 100_000);
        const marker = `sleep\0${n}`;
        const stop = new AbortController();
        const running = nsRun(["sh", "-c", `sleep ${n} & sleep ${n} & sleep ${n}`], { abort: stop.signal });
        await new Promise((r) => setTimeout(r, 500));
        stop.abort();
        await assert.rejects(running, /stopped by the factory/);
        await new Promise((r) => setTimeout(r, 300));
        const left = fs.readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
            try {
                return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes(marker);
            } catch {
                return false;
            }
        });
        assert.deepEqual(left, []);
    });

    it("reclaim gives a cache's directory back to its owner from subordinate ids and, for root, from any host id", async () => {
        const partial = path.join(tmp, "partial");
        fs.mkdirSync(partial);
        // apt's _apt (42) inside a namespace: a subordinate id outside, which the caller cannot remove files of.
        await nsRun(["sh", "-c", 'touch "$1/pkg.deb.FAILED" && chown -R 42:42 "$1"', "sh", partial]);
        assert.notEqual(fs.statSync(partial).uid, process.getuid?.());
        if (process.getuid?.() === 0) {
            // An earlier program ran apt in a plain chroot as root: host uid 42, outside every build namespace's map.
            fs.writeFileSync(path.join(partial, "old.deb"), "");
            fs.chownSync(partial, 42, 42);
            fs.chownSync(path.join(partial, "old.deb"), 42, 42);
        }
        await reclaim(partial);
        for (const f of [partial, ...fs.readdirSync(partial).map((n) => path.join(partial, n))]) {
            const st = fs.statSync(f);
            assert.deepEqual([st.uid, st.gid], [process.getuid?.(), process.getgid?.()], f);
        }
    });

    it("passes the command's exit status and output through", async () => {
        await assert.rejects(nsRun(["sh", "-c", "echo broken >&2; exit 3"], { hint: "the fix" }),
            (e: Error) => e.message === '[build namespace] sh -c "echo broken >&2; exit 3" failed with exit code 3:\n  broken\nthe fix');
    });
});
