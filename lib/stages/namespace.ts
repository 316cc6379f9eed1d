// Builds without root (issue 35). Every command that makes, changes or reads an image root runs in a user namespace
// of its own (with a mount and a PID namespace), as root of that namespace: uid and gid 0 inside are the invoking
// user outside, 1..65536 inside are a subordinate range outside (/etc/subuid and /etc/subgid, written through
// newuidmap/newgidmap, which is what those files are for). So apt's _apt, a package's system users and the bootstrap
// user own their files by number exactly as a root build would have them, mkfs.ext4 -d (run inside too) reads those
// numbers, and the image is the same bytes whoever ran the build.
//
// Root gets the same: its namespace maps 0 to 0 and 1..65536 to root's range in /etc/subuid (or ROOT_FIRST_ID when it
// has none: root may write any map). Inside, nothing has a capability outside the namespace: no mknod, no mount or
// loop device on the host, no module, no sysctl. That is also why root and an ordinary user now make the same tree: a
// device node cannot be made in either (mmdebstrap sees that and bind-mounts instead), where the root build used to
// leave /dev/console, /dev/null and friends in the image (the booted system mounts devtmpfs over /dev anyway).
//
// Mounts (proc, sys, a small /dev, the shared apt cache) exist only inside the namespace and only while its command
// runs: when the command ends or is killed, the kernel takes them with it, so nothing stays mounted on the host and
// nothing is left to unmount after a crash. The PID namespace ends every process a package script started.
//
// Why not `unshare --map-users`: util-linux asks newuidmap for every map, and newuidmap refuses root without an
// /etc/subuid entry. Why the second shell: a process that execs before its namespace has an id map loses its
// capabilities, so the first shell only waits (fd 3, lib/exec.ts gate) and the second starts as root of the namespace.
// Gaining those capabilities clears the parent-death signal unshare's --kill-child set, so setpriv sets it again: when
// unshare dies (it ignores SIGTERM; a stop kills it), the namespace's first process and with it every other one dies.
import * as fs from "node:fs";
import * as os from "node:os";
import { run, showCommand, which, type RunOptions, type RunResult } from "../exec";
import { UserError } from "../errors";

/** Ids a Debian tree uses: 0..65535 (nobody is 65534); inner 1..65536 come from the subordinate range. */
export const SUBORDINATE_IDS = 65536;
/** Root's range when /etc/subuid has none for root: the start of systemd's container range (systemd's UIDS-GIDS.md). */
export const ROOT_FIRST_ID = 524288;

export interface IdRange {
    inner: number;
    outer: number;
    count: number;
}

export interface IdMap {
    uid: IdRange[];
    gid: IdRange[];
    /** Root writes /proc/<pid>/{uid,gid}_map itself; anyone else goes through newuidmap and newgidmap. */
    direct: boolean;
}

/** User namespaces cannot be had here: the message names what is missing and the command that fixes it. */
export class UserNamespaceError extends UserError {
    constructor(message: string) {
        super(message);
        this.name = "UserNamespaceError";
    }
}

/** The first range of /etc/subuid (or subgid) text for a user, by name or by number, as newuidmap reads it. */
export function subordinateRange(text: string, user: string, id: number): { start: number; count: number } | undefined {
    for (const line of text.split("\n")) {
        const [who, start, count] = line.trim().split(":");
        if (!who || line.trim().startsWith("#") || (who !== user && who !== String(id))) continue;
        const s = Number(start), c = Number(count);
        if (Number.isInteger(s) && Number.isInteger(c) && c > 0) return { start: s, count: c };
    }
    return undefined;
}

export interface HostIds {
    uid: number;
    gid: number;
    user: string;
    subuid: string;
    subgid: string;
}

export function hostIds(): HostIds {
    const read = (f: string) => {
        try {
            return fs.readFileSync(f, "utf8");
        } catch {
            return "";
        }
    };
    const info = os.userInfo();
    return { uid: info.uid, gid: info.gid, user: info.username, subuid: read("/etc/subuid"), subgid: read("/etc/subgid") };
}

/** The command that gives `user` the ranges a build needs (run as root). */
export function subidFix(user: string): string {
    return `as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${user} (any free range of ${SUBORDINATE_IDS} ids; ` +
        "useradd gives new users one by itself)";
}

/** The id maps of a build namespace for these host ids; throws naming the fix when a range is missing or short. */
export function idMapFor(host: HostIds): IdMap {
    const ranges = { uid: subordinateRange(host.subuid, host.user, host.uid), gid: subordinateRange(host.subgid, host.user, host.uid) };
    if (host.uid === 0) {
        const r = (x?: { start: number; count: number }) => [{ inner: 0, outer: 0, count: 1 }, { inner: 1, outer: x && x.count >= SUBORDINATE_IDS ? x.start : ROOT_FIRST_ID, count: SUBORDINATE_IDS }];
        return { uid: r(ranges.uid), gid: r(ranges.gid), direct: true };
    }
    for (const kind of ["uid", "gid"] as const) {
        const r = ranges[kind];
        if (!r) throw new UserNamespaceError(`${host.user} has no subordinate ${kind} range in /etc/sub${kind}, which a build without root needs ` +
            `(the image's users and groups own their files by number): ${subidFix(host.user)}`);
        if (r.count < SUBORDINATE_IDS) throw new UserNamespaceError(`${host.user}'s subordinate ${kind} range in /etc/sub${kind} has ${r.count} ids; ` +
            `a Debian tree uses ${SUBORDINATE_IDS} (nobody is 65534): ${subidFix(host.user)}`);
    }
    const self = (id: number, r: { start: number }) => [{ inner: 0, outer: id, count: 1 }, { inner: 1, outer: r.start, count: SUBORDINATE_IDS }];
    return { uid: self(host.uid, ranges.uid!), gid: self(host.gid, ranges.gid!), direct: false };
}

function readNumber(file: string): number | undefined {
    try {
        return Number(fs.readFileSync(file, "utf8").trim());
    } catch {
        return undefined;
    }
}

/**
 * What stops a build namespace here, each with its fix (empty: nothing known). The probe in
 * checkUserNamespaces() is what decides; this says why it failed.
 */
export function namespaceBlockers(host: HostIds = hostIds(), proc = "/proc/sys"): string[] {
    const out: string[] = [];
    if (readNumber(`${proc}/user/max_user_namespaces`) === 0) {
        out.push("user namespaces are switched off (user.max_user_namespaces = 0): as root, sysctl -w user.max_user_namespaces=15000 " +
            "(and the same line in /etc/sysctl.d/ to keep it)");
    }
    if (host.uid !== 0 && readNumber(`${proc}/kernel/unprivileged_userns_clone`) === 0) {
        out.push("this kernel lets only root make user namespaces (kernel.unprivileged_userns_clone = 0): as root, " +
            "sysctl -w kernel.unprivileged_userns_clone=1");
    }
    if (host.uid !== 0 && readNumber(`${proc}/kernel/apparmor_restrict_unprivileged_userns`) === 1) {
        out.push("AppArmor restricts user namespaces to profiled programs (kernel.apparmor_restrict_unprivileged_userns = 1, as on Ubuntu 24.04): " +
            "give /usr/bin/unshare a profile with the userns rule (Ubuntu's /etc/apparmor.d/ shows the form), or as root sysctl -w kernel.apparmor_restrict_unprivileged_userns=0");
    }
    if (host.uid !== 0) {
        for (const tool of ["newuidmap", "newgidmap"]) {
            if (!which(tool)) out.push(`${tool} is missing: as root, apt-get install uidmap`);
        }
        try {
            idMapFor(host);
        } catch (e) {
            out.push((e as Error).message);
        }
    }
    if (!which("unshare")) out.push("unshare is missing: install util-linux");
    return out;
}

const quote = (s: string) => `'${s.replace(/'/g, `'"'"'`)}'`;

/** A build root's mounts inside the namespace: the kernel's file systems, a small /dev, and bind mounts. */
export interface NsMounts {
    root: string;
    binds?: Array<{ source: string; target: string }>;
}

// The device nodes a package script or Ansible may open; only these, so root of the namespace sees no disk of the host.
const DEVICES = ["null", "zero", "full", "random", "urandom", "tty"];

/** The script the namespace's root runs before the command: mounts (if any), then exec "$@". */
export function namespaceScript(mounts?: NsMounts): string {
    const lines = ["set -e"];
    if (mounts) {
        const r = quote(mounts.root.replace(/\/+$/, ""));
        lines.push(
            `mount -t proc proc ${r}/proc`,
            // a new sysfs needs a network namespace of our own, and apt needs the host's network: bound instead
            `mount --rbind /sys ${r}/sys`,
            // a tmpfs over the tree's /dev: the nodes bound into it never touch the tree
            `mount -t tmpfs -o mode=755,nosuid,size=1m tmpfs ${r}/dev`,
            `for d in ${DEVICES.join(" ")}; do : > ${r}/dev/$d; mount --bind /dev/$d ${r}/dev/$d; done`,
            `mkdir ${r}/dev/pts ${r}/dev/shm`,
            `mount -t devpts -o newinstance,gid=5,mode=620,ptmxmode=0666 devpts ${r}/dev/pts`,
            `mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs ${r}/dev/shm`,
            `ln -s pts/ptmx ${r}/dev/ptmx; ln -s /proc/self/fd ${r}/dev/fd`,
            `ln -s /proc/self/fd/0 ${r}/dev/stdin; ln -s /proc/self/fd/1 ${r}/dev/stdout; ln -s /proc/self/fd/2 ${r}/dev/stderr`,
        );
        for (const b of mounts.binds ?? []) {
            const target = `${r}/${quote(b.target.replace(/^\/+/, ""))}`;
            lines.push(`mkdir -p ${target}`, `mount --bind ${quote(b.source)} ${target}`);
        }
    }
    lines.push('exec "$@"');
    return lines.join("\n");
}

// The first shell waits for its id maps (fd 3), then starts the second, which is root of the namespace.
const WAIT_FOR_MAPS = 'read -r go <&3 && [ "$go" = go ] || { echo "image-factory: the build namespace got no id map" >&2; exit 125; }\n' +
    'exec 3<&-\nexec setpriv --pdeathsig KILL /bin/sh -c "$0" image-factory-ns "$@"';

async function writeMaps(pid: number, map: IdMap): Promise<void> {
    // The namespace exists once the unshare process's user namespace is not ours any more.
    const own = fs.readlinkSync("/proc/self/ns/user");
    const t0 = Date.now();
    for (;;) {
        let ns: string;
        try {
            ns = fs.readlinkSync(`/proc/${pid}/ns/user`);
        } catch {
            return; // it has exited: its own exit status says why
        }
        if (ns !== own) break;
        if (Date.now() - t0 > 10_000) throw new UserNamespaceError(`unshare (pid ${pid}) made no user namespace within 10 s`);
        await new Promise((r) => setTimeout(r, 2));
    }
    const line = (r: IdRange) => `${r.inner} ${r.outer} ${r.count}`;
    if (map.direct) {
        fs.writeFileSync(`/proc/${pid}/uid_map`, `${map.uid.map(line).join("\n")}\n`);
        fs.writeFileSync(`/proc/${pid}/gid_map`, `${map.gid.map(line).join("\n")}\n`);
        return;
    }
    const args = (rs: IdRange[]) => [String(pid), ...rs.flatMap((r) => [String(r.inner), String(r.outer), String(r.count)])];
    const fix = `run make image.tools.check, which names the fix`;
    await run("newuidmap", args(map.uid), { hint: `newuidmap refused the build namespace's uid map: ${fix}` });
    await run("newgidmap", args(map.gid), { hint: `newgidmap refused the build namespace's gid map: ${fix}` });
}

let mapMemo: IdMap | undefined;

/** Runs argv as root of a fresh build namespace (with the mounts, if given); output, errors and abort as run(). */
export async function nsRun(argv: string[], opts: RunOptions & { mounts?: NsMounts } = {}): Promise<RunResult> {
    const map = mapMemo ??= idMapFor(hostIds());
    const { mounts, ...rest } = opts;
    // setpriv first: unshare dies with this process (a killed build leaves nothing running), and with it the namespace.
    return run("setpriv", ["--pdeathsig", "KILL", "--", "unshare", "--user", "--mount", "--pid", "--fork", "--kill-child", "--",
        "/bin/sh", "-c", WAIT_FOR_MAPS, namespaceScript(mounts), ...argv], {
        ...rest,
        stopSignal: "SIGKILL",
        shownAs: `${mounts ? `[build namespace, mounts in ${mounts.root}]` : "[build namespace]"} ${showCommand(argv)}`,
        gate: (pid) => writeMaps(pid, map),
    });
}

let probe: Promise<void> | undefined;

/**
 * Fails before a build starts when no build namespace can be made here, naming why and the fix. One real
 * namespace (with a mount of its own) decides; it is made once per process.
 */
export function checkUserNamespaces(): Promise<void> {
    probe ??= (async () => {
        const blockers = namespaceBlockers();
        try {
            mapMemo = idMapFor(hostIds());
            const dir = fs.mkdtempSync(`${os.tmpdir()}/image-factory-ns-`);
            try {
                await nsRun(["/bin/sh", "-c", `mount -t tmpfs tmpfs ${quote(dir)} && [ "$(id -u)" = 0 ]`]);
            } finally {
                fs.rmSync(dir, { recursive: true, force: true });
            }
        } catch (e) {
            probe = undefined;
            const why = blockers.length ? blockers.join("; ") : (e as Error).message.split("\n").slice(0, 4).join(" ");
            throw new UserNamespaceError(`builds run in a user namespace (no root needed, none used), and none can be made here: ${why}`);
        }
    })();
    return probe;
}
