// The rootfs builder: Debian from the package mirror into a directory (mmdebstrap's minbase, then apt for the rest),
// configured Ansible-ready (FR-3) without booting anything, optionally shaped by an Ansible playbook over the
// chroot connection (FR-6), then assembled into a bootable raw disk (disk.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { run } from "../exec";
import { nsRun } from "./namespace";
import { withFileLock } from "../fileLock";
import { Chroot, reclaim, removeTree } from "./chroot";
import { assembleBiosDisk, convertQcow2, kernelVersions } from "./disk";
import { uuidFromKey } from "./buildKey";
import { sha256Hex } from "../sha256";
import { known, type Builder, type BuildDirs } from "./steps";
import { keepTree, releaseDigest, restoreTree, treeKey, treesDir } from "./treeCache";

/** Every rootfs image gets these: kernel, boot loader, init, and what FR-3 calls Ansible-ready. */
export const BASE_PACKAGES = [
    "linux-image-cloud-amd64", "grub-pc-bin", "grub2-common", "systemd-sysv", "udev", "dbus",
    "cloud-init", "cloud-guest-utils", "openssh-server", "python3", "sudo",
    "ifupdown", "isc-dhcp-client", "netbase", "iproute2", "ca-certificates", "qemu-guest-agent", "less",
    // cloud-init's locale module runs update-locale on every first boot
    "locales",
    // initramfs-tools' COMPRESS=zstd: without the tool mkinitramfs falls back to gzip, 2.7 s more per build here
    // and a slower decompress at every boot
    "zstd",
];

export const KERNEL_CMDLINE = "ro console=tty0 console=ttyS0,115200n8";
export const MANIFEST_PATH = "/etc/image-factory/pkg-manifest.txt";
export const BUILD_JSON_PATH = "/etc/image-factory/build.json";
export const SSHD_DROPIN = "/etc/ssh/sshd_config.d/10-image-factory.conf";

export interface RootfsSpec {
    name: string;
    hostname: string;
    domain: string;
    suite: string;
    mirror: string;
    securityMirror: string;
    /** Snapshot archive timestamp: when set, both archives come from that frozen snapshot under snapshotBase. */
    snapshot?: string;
    snapshotBase?: string;
    packages: string[];
    diskSizeMiB: number;
    user: { name: string; authorizedKeys: string[] };
    /** Absolute path of the playbook, when the recipe has one. */
    playbook?: string;
    /** Directories Ansible finds roles and collections in. */
    ansibleRolesPath?: string[];
    ansibleCollectionsPath?: string[];
    sourceDateEpoch: number;
    buildKey: string;
    /** Traceability record written to /etc/image-factory/build.json (the base image is added by the build). */
    buildInfo: Record<string, unknown>;
}

interface RootfsContext {
    spec: RootfsSpec;
    log: BuildLog;
    work: string;
    rootDir: string;
    chroot: Chroot;
    /** The archives packages come from (the snapshot's, when pinned). */
    archives: { main: string; security: string };
    env: Record<string, string>;
    /** The minbase tree's package files, kept between builds (mmdebstrap's own download step reads and fills it). */
    minbaseCache: string;
    aptCache: string;
    /** Where finished trees are kept (treeCache.ts); undefined: nowhere (IMAGE_FACTORY_TREES=off). */
    treeCache?: string;
    pkgManifest: string;
    rawDisk: string;
    /** The archive's Release file the minbase tree was made from: known after the first step. */
    base?: { id: string; sha256: string; mirror: string };
    /** Cache keys of the minbase tree and of the tree after the packages (undefined: an archive's Release was unreadable). */
    trees: { minbase?: string; packages?: string };
    /** Which tree the first step unpacked from the cache, if any. */
    restored?: "minbase" | "packages";
}

function archives(spec: RootfsSpec): { main: string; security: string } {
    if (spec.snapshot) {
        if (!spec.snapshotBase) throw new Error("a Debian snapshot needs factory:debian.snapshotBase (the snapshot archive's base URL)");
        const base = spec.snapshotBase.replace(/\/+$/, "");
        return { main: `${base}/archive/debian/${spec.snapshot}`, security: `${base}/archive/debian-security/${spec.snapshot}` };
    }
    return { main: spec.mirror, security: spec.securityMirror };
}

export function sourcesList(spec: RootfsSpec): string {
    const a = archives(spec);
    const check = spec.snapshot ? "[check-valid-until=no] " : "";
    return [
        `deb ${check}${a.main} ${spec.suite} main`,
        `deb ${check}${a.main} ${spec.suite}-updates main`,
        `deb ${check}${a.security} ${spec.suite}-security main`,
        "",
    ].join("\n");
}

/** Keeps documentation, man pages and translations out of the image (as Debian's minimal cloud images do). */
const DPKG_EXCLUDES = `path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
`;

const APT_CONF = 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Retries "3";\n';

// dpkg without an fsync per file: a build that dies is thrown away, never resumed. On the command line for apt,
// as --dpkgopt for mmdebstrap, which leaves it in a file (removed after it): nothing of it stays in the image.
const UNSAFE_IO = ["-o", "Dpkg::Options::=--force-unsafe-io"];
const MMDEBSTRAP_DPKG_CONF = "/etc/dpkg/dpkg.cfg.d/99mmdebstrap";

/**
 * mmdebstrap's minbase (Essential and Priority: required, and apt), the same package set debootstrap's minbase
 * installs, in half its time: one apt resolution instead of debootstrap's shell one (issue 20: 18.6 s against 43 s
 * on one machine under the same load). Merged /usr by Debian's hook, as debootstrap does it, not by the usrmerge
 * package (which would pull in perl). The package lists stay (baseOf reads the Release file from them) and so
 * do the package files, which the step moves into the per-user cache itself: mmdebstrap never deletes anything there.
 */
export function mmdebstrapArgs(spec: RootfsSpec, rootDir: string): string[] {
    return ["--mode=root", "--variant=minbase", "--components=main", "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        "--dpkgopt=force-unsafe-io", "--skip=download/empty", "--skip=essential/unlink", "--skip=cleanup/apt",
        // The cached package files, copied in before the download step (which then fetches only what is missing). Only
        // *.deb: another build may be writing a .partial there, which it renames away mid-copy.
        '--setup-hook=mkdir -p "$1/var/cache/apt/archives" && find "$IMAGE_FACTORY_MINBASE_DEBS" -maxdepth 1 -name "*.deb" -exec cp -p -t "$1/var/cache/apt/archives/" {} +',
        spec.suite, rootDir, sourcesList(spec).split("\n")[0]];
}

/** Package files the minbase step downloaded, into the cache (each written whole, then renamed), and out of the tree. */
export function keepPackageFiles(archives: string, cache: string): void {
    for (const f of fs.readdirSync(archives)) {
        if (!f.endsWith(".deb")) continue;
        const kept = path.join(cache, f);
        if (!fs.existsSync(kept)) {
            // One .partial per process: two builds keeping the same file must not write into one.
            const partial = `${kept}.${process.pid}.partial`;
            fs.copyFileSync(path.join(archives, f), partial);
            fs.renameSync(partial, kept);
        }
        fs.rmSync(path.join(archives, f));
    }
}

/** The cache keys of the minbase tree and of the tree after the packages: everything that shapes each (treeCache.ts). */
async function treeKeys(spec: RootfsSpec, a: { main: string; security: string }): Promise<RootfsContext["trees"]> {
    const [main, updates, security] = await Promise.all([
        releaseDigest(a.main, spec.suite), releaseDigest(a.main, `${spec.suite}-updates`), releaseDigest(a.security, `${spec.suite}-security`),
    ]);
    if (!main) return {};
    const minbase = treeKey({
        tree: "minbase", suite: spec.suite, archive: a.main, release: main, sourceDateEpoch: spec.sourceDateEpoch,
        revision: spec.buildInfo.builderRevision, tools: spec.buildInfo.tools, arch: process.arch,
    });
    if (!updates || !security) return { minbase };
    return {
        minbase,
        packages: treeKey({
            tree: "packages", minbase, releases: [updates, security], sources: sourcesList(spec),
            packages: [...BASE_PACKAGES, ...spec.packages], excludes: DPKG_EXCLUDES, aptConf: APT_CONF,
        }),
    };
}

export function sshdDropIn(): string {
    // sshd keeps the first value it reads; this file sorts before cloud-init's 50-cloud-init.conf, so a
    // metadata service asking for password login cannot turn it back on.
    return ["# image-factory: key-only SSH (FR-3); validated offline before publishing", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "PubkeyAuthentication yes", ""].join("\n");
}

function cloudInitConfig(user: string): string {
    return `# image-factory: cloud-init on every clone; the bootstrap user is the default user, key-only.
datasource_list: [NoCloud, ConfigDrive, None]
# C.UTF-8 ships with libc: nothing to generate at first boot
locale: C.UTF-8
disable_root: true
ssh_pwauth: false
ssh_deletekeys: true
ssh_genkeytypes: [ed25519, ecdsa, rsa]
system_info:
  default_user:
    name: ${user}
    lock_passwd: true
    gecos: Bootstrap user (image-factory)
    groups: [sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
`;
}

export const rootfsBuilder: Builder<RootfsSpec, RootfsContext> = {
    async open(spec: RootfsSpec, dirs: BuildDirs, log: BuildLog) {
        const rootDir = path.join(dirs.work, "root");
        await removeTree(rootDir, log); // leftovers of an interrupted build
        fs.mkdirSync(rootDir, { recursive: true });
        const minbaseCache = path.join(dirs.cache, "minbase", spec.suite);
        const aptCache = path.join(dirs.cache, "apt-archives", spec.suite);
        fs.mkdirSync(minbaseCache, { recursive: true });
        fs.mkdirSync(path.join(aptCache, "partial"), { recursive: true });
        const a = archives(spec);
        return {
            spec, log, work: dirs.work, rootDir, chroot: new Chroot(rootDir, log), archives: a, env: { SOURCE_DATE_EPOCH: String(spec.sourceDateEpoch) },
            minbaseCache, aptCache, pkgManifest: path.join(dirs.work, "pkg-manifest.txt"), rawDisk: path.join(dirs.work, "disk.raw"),
            treeCache: treesDir(), trees: await treeKeys(spec, a),
        };
    },
    steps: [
        {
            name: (c) => `mmdebstrap ${c.spec.suite} (minbase) from ${c.archives.main}, or its tree from the cache`,
            async run(c) {
                if (await restoreTree(c.treeCache, c.trees.packages, c.rootDir, c.log)) c.restored = "packages";
                else if (await restoreTree(c.treeCache, c.trees.minbase, c.rootDir, c.log)) c.restored = "minbase";
                else {
                    // --mode=root as root of the build namespace (namespace.ts): mmdebstrap finds it may not mknod and
                    // bind-mounts the device nodes instead, the same for a root and an unprivileged build.
                    await nsRun(["mmdebstrap", ...mmdebstrapArgs(c.spec, c.rootDir)], {
                        log: c.log, env: { ...c.env, IMAGE_FACTORY_MINBASE_DEBS: c.minbaseCache },
                        hint: `check that ${c.archives.main} is reachable (factory:debian.mirror)`,
                    });
                    keepPackageFiles(c.chroot.path("/var/cache/apt/archives"), c.minbaseCache);
                    fs.rmSync(c.chroot.path(MMDEBSTRAP_DPKG_CONF));
                    await keepTree(c.treeCache, c.trees.minbase, c.rootDir, c.log);
                }
                c.base = baseOf(c.rootDir, c.spec, c.archives.main);
            },
        },
        {
            name: (c) => `install ${BASE_PACKAGES.length + c.spec.packages.length} packages with apt${c.restored === "packages" ? " (tree from the cache)" : ""}`,
            async run({ chroot, spec, rootDir, aptCache, env, restored, trees, treeCache, log }) {
                if (restored === "packages") return chroot.mountSystem();
                chroot.write("/etc/dpkg/dpkg.cfg.d/01-image-factory-nodoc", DPKG_EXCLUDES);
                chroot.write("/etc/apt/sources.list", sourcesList(spec));
                chroot.write("/etc/apt/apt.conf.d/90-image-factory", APT_CONF);
                // No service may start inside the build root.
                chroot.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755);
                for (const d of ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"]) {
                    await pruneDocs(path.join(rootDir, d));
                }
                await chroot.mountSystem();
                await chroot.bind(aptCache, "var/cache/apt/archives");
                await chroot.exec(["apt-get", "update", "-q"], { env, hint: "the package mirror could not be read" });
                // The archive cache is shared by every build on the machine: builds take turns on it (apt would refuse a
                // second one with "Could not get lock /var/cache/apt/archives/lock").
                await withFileLock(path.join(aptCache, ".image-factory.lock"), async () => {
                    // apt hands partial/ to its _apt user; another build's, or an older program's, is reclaimed first (and
                    // only under the lock: a build downloading into it would lose its files).
                    await reclaim(path.join(aptCache, "partial"), log);
                    try {
                        await chroot.exec(["apt-get", ...UNSAFE_IO, "dist-upgrade", "-y", "-q"], { env });
                        // The kernel's postinst would make an initramfs that the initramfs-tools trigger at the end of the same
                        // run makes again (9 s each): INITRD=No skips the first, and the one made afterwards is the same file.
                        await chroot.exec(["apt-get", ...UNSAFE_IO, "install", "-y", "-q", ...BASE_PACKAGES, ...spec.packages], { env: { ...env, INITRD: "No" } });
                    } finally {
                        // And back to the cache's owner, failed or not, so the per-user cache stays the user's to clear.
                        await reclaim(path.join(aptCache, "partial"), log);
                    }
                }, 60 * 60_000);
                await makeInitramfs(chroot, rootDir, env);
                // Unbound first: `apt-get clean` on the mounted shared cache emptied it after every build.
                await chroot.unbind("var/cache/apt/archives");
                await chroot.unmountAll();
                await keepTree(treeCache, trees.packages, rootDir, log);
                await chroot.mountSystem();
            },
        },
        {
            name: "configure: user, sudo, sshd, cloud-init, network, boot",
            run: (c) => configure(c.chroot, c.spec, c.env),
        },
        {
            name: (c) => c.spec.playbook ? `ansible-playbook ${path.basename(c.spec.playbook)} (chroot connection)` : "ansible (no playbook in recipe)",
            async run(c) {
                if (c.spec.playbook) await runPlaybook({ ...c.spec, playbook: c.spec.playbook }, c.chroot, c.work, c.log, { verifyIdempotent: true });
            },
        },
        {
            name: "package manifest and build info",
            run: (c) => writeManifestAndBuildInfo(c.chroot, { ...c.spec.buildInfo, base: known(c.base, "the Debian archive's Release file") }, c.pkgManifest),
        },
        {
            name: "clean up (caches, logs, machine identity, timestamps)",
            async run(c) {
                await c.chroot.exec(["apt-get", "clean"]);
                await c.chroot.unmountAll();
                await cleanup(c.chroot, c.spec.sourceDateEpoch);
            },
        },
        {
            name: (c) => `assemble ${c.spec.diskSizeMiB} MiB disk (ext4, MBR, GRUB)`,
            async run(c) {
                await assembleBiosDisk({
                    chroot: c.chroot, out: c.rawDisk, diskSizeMiB: c.spec.diskSizeMiB, fsUuid: uuidFromKey(c.spec.buildKey, "rootfs"),
                    fsLabel: "root", sourceDateEpoch: c.spec.sourceDateEpoch, kernelCmdline: KERNEL_CMDLINE, log: c.log,
                });
            },
        },
    ],
    release: (c) => c.chroot.unmountAll(),
    finish: { name: "convert to qcow2 (compressed, sparse), check, sha256", run: (c, out) => convertQcow2(c.rawDisk, "raw", out, c.log) },
    output: (c) => ({ pkgManifest: c.pkgManifest, base: known(c.base, "the Debian archive's Release file") }),
};

/**
 * The initramfs of the newest kernel, made once after the package install (which ran with INITRD=No), and the
 * /initrd.img links the kernel's postinst makes only when that file exists. Shown to give the same files as the
 * install without INITRD=No (the initramfs byte for byte, every path, link and mode) on debian-12-minimal.
 */
async function makeInitramfs(chroot: Chroot, rootDir: string, env: Record<string, string>): Promise<void> {
    const kernels = kernelVersions(rootDir);
    const newest = kernels[kernels.length - 1];
    if (!newest) return; // assembleBiosDisk says that a kernel is missing
    await chroot.exec(["update-initramfs", "-c", "-k", newest], { env });
    await chroot.exec(["linux-update-symlinks", "install", newest, `/boot/vmlinuz-${newest}`], { env });
}

function baseOf(rootDir: string, spec: RootfsSpec, mirror: string): { id: string; sha256: string; mirror: string } {
    // The archive's signed Release file identifies exactly which package set the minbase tree was made from.
    const lists = path.join(rootDir, "var/lib/apt/lists");
    const release = fs.readdirSync(lists).find((f) => f.endsWith(`_dists_${spec.suite}_InRelease`))
        ?? fs.readdirSync(lists).find((f) => f.endsWith(`_dists_${spec.suite}_Release`));
    const sha256 = release ? sha256Hex(fs.readFileSync(path.join(lists, release))) : "unknown";
    return { id: `debian:${spec.suite}${spec.snapshot ? `@${spec.snapshot}` : ""}`, sha256, mirror };
}

async function pruneDocs(dir: string): Promise<void> {
    if (!fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (dir.endsWith("usr/share/doc") && e.isDirectory()) {
            for (const f of fs.readdirSync(p)) if (f !== "copyright") fs.rmSync(path.join(p, f), { recursive: true, force: true });
        } else if (!(dir.endsWith("usr/share/locale") && e.name === "locale.alias")) {
            fs.rmSync(p, { recursive: true, force: true });
        }
    }
}

async function configure(chroot: Chroot, spec: RootfsSpec, env: Record<string, string>): Promise<void> {
    const u = spec.user;
    const fqdn = `${spec.hostname}.${spec.domain}`;
    chroot.write("/etc/hostname", `${spec.hostname}\n`);
    chroot.write("/etc/default/locale", "LANG=C.UTF-8\n");
    chroot.write("/etc/hosts", `127.0.0.1\tlocalhost\n127.0.1.1\t${fqdn} ${spec.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n`);
    chroot.write("/etc/fstab", `UUID=${uuidFromKey(spec.buildKey, "rootfs")}\t/\text4\terrors=remount-ro\t0\t1\n`);
    chroot.write("/etc/network/interfaces", "# cloud-init writes the interface configuration into interfaces.d\nauto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n");
    chroot.write("/etc/default/grub", `GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR=Debian\nGRUB_CMDLINE_LINUX_DEFAULT=""\nGRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"\nGRUB_TERMINAL="console serial"\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n`);
    // No floppy on any VM we target; probing the emulated controller only slows boots down.
    chroot.write("/etc/modprobe.d/image-factory-blacklist.conf", "blacklist floppy\n");
    chroot.write("/etc/cloud/cloud.cfg.d/90-image-factory.cfg", cloudInitConfig(u.name));
    chroot.write(SSHD_DROPIN, sshdDropIn());

    await configureBootstrapUser(chroot, u, env);

    // cloud-init runs on every clone of the template.
    await chroot.exec(["systemctl", "enable", "cloud-init-local.service", "cloud-init.service", "cloud-config.service", "cloud-final.service", "ssh.service"]);
    await checkSshd(chroot);
}

/** build.json and the sorted package manifest, into the image (/etc/image-factory/) and beside the build. */
export async function writeManifestAndBuildInfo(chroot: Chroot, buildInfo: Record<string, unknown>, pkgManifest: string): Promise<void> {
    chroot.write(BUILD_JSON_PATH, `${JSON.stringify(buildInfo, null, 2)}\n`);
    const { stdout } = await chroot.exec(["dpkg-query", "-W", "-f", "${binary:Package}\\t${Version}\\t${Architecture}\\n"]);
    const manifest = `${stdout.split("\n").filter(Boolean).sort().join("\n")}\n`;
    fs.writeFileSync(pkgManifest, manifest);
    chroot.write(MANIFEST_PATH, manifest);
}

/**
 * The bootstrap user (FR-3), in any image root: created unless the base already has it, no password (locked),
 * key login, passwordless sudo through a sudoers.d drop-in that visudo accepts.
 */
export async function configureBootstrapUser(chroot: Chroot, u: { name: string; authorizedKeys: string[] }, env: Record<string, string> = {}): Promise<void> {
    const exists = await chroot.exec(["getent", "passwd", u.name]).then(() => true, () => false);
    if (!exists) {
        await chroot.exec(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "--groups", "sudo", "--comment", "Bootstrap user (image-factory)", u.name], { env });
    }
    await chroot.exec(["passwd", "--lock", u.name]);
    // Written from inside, in one command: the home belongs to the user's id, which a build without root cannot write
    // to from outside.
    await chroot.exec(["sh", "-c", 'install -d -m 700 "$1" && (umask 077 && cat > "$1/authorized_keys") && chown -R "$2:$2" "$1" && ' +
        'chmod 700 "$1" && chmod 600 "$1/authorized_keys"', "sh", `/home/${u.name}/.ssh`, u.name], { input: `${u.authorizedKeys.join("\n")}\n` });
    const sudoers = `/etc/sudoers.d/90-image-factory-${u.name}`;
    chroot.write(sudoers, `# image-factory bootstrap user: Ansible needs non-interactive privilege escalation\n${u.name} ALL=(ALL:ALL) NOPASSWD: ALL\n`, 0o440);
    await chroot.exec(["visudo", "--check", "--strict", "--file", sudoers], { hint: "the generated sudoers drop-in is invalid (or sudo is missing from the image)" });
}

/** sshd -t in the image root. It needs host keys and its privilege separation directory; both are throwaway
 *  (cleanup removes the keys, /run is a tmpfs on the booted system). */
export async function checkSshd(chroot: Chroot): Promise<void> {
    await chroot.exec(["ssh-keygen", "-A"]);
    fs.mkdirSync(chroot.path("/run/sshd"), { recursive: true, mode: 0o755 });
    await chroot.exec(["/usr/sbin/sshd", "-t"], { hint: "sshd rejects the generated configuration" });
}

export interface PlaybookRun {
    name: string;
    user: { name: string };
    playbook: string;
    ansibleRolesPath?: string[];
    ansibleCollectionsPath?: string[];
    sourceDateEpoch: number;
    extraVars?: Record<string, unknown>;
}

/** The PLAY RECAP totals of an ansible-playbook run (summed over hosts; lines may carry a prefix such as Packer's). */
export function playRecap(output: string): { ok: number; changed: number; failed: number } | undefined {
    const rows = [...output.matchAll(/^.*?\S+\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)/gm)];
    if (!rows.length) return undefined;
    return rows.reduce((a, m) => ({ ok: a.ok + Number(m[1]), changed: a.changed + Number(m[2]), failed: a.failed + Number(m[3]) }), { ok: 0, changed: 0, failed: 0 });
}

/** Each PLAY RECAP of an output holding several runs (Packer's two Ansible provisioners), in order. */
export function playRecaps(output: string): Array<NonNullable<ReturnType<typeof playRecap>>> {
    const out: Array<NonNullable<ReturnType<typeof playRecap>>> = [];
    for (const block of output.split(/PLAY RECAP \**/).slice(1)) {
        const hosts: string[] = [];
        for (const line of block.split("\n").slice(1)) {
            if (/ok=\d+/.test(line)) hosts.push(line);
            else if (hosts.length || !/^\s*(\S+:)?\s*$/.test(line)) break; // blank (or Packer's "name:" prefix only) lines come first
        }
        const r = playRecap(hosts.join("\n"));
        if (r) out.push(r);
    }
    return out;
}

/**
 * Runs the recipe's playbook against an image root over Ansible's chroot connection. With `verifyIdempotent`
 * it runs a second time and fails unless that run changes nothing (NFR-2: provisioning converges).
 */
export async function runPlaybook(spec: PlaybookRun, chroot: Chroot, work: string, log: BuildLog, opts: { verifyIdempotent?: boolean } = {}): Promise<{ first: ReturnType<typeof playRecap>; second?: ReturnType<typeof playRecap> }> {
    const tmp = path.join(work, "ansible-tmp");
    fs.mkdirSync(tmp, { recursive: true });
    const vars = path.join(work, "ansible-extra-vars.json");
    fs.writeFileSync(vars, JSON.stringify({ image_name: spec.name, bootstrap_user: spec.user.name, ...spec.extraVars }));
    // Ansible runs as root of the image root's namespace, with its mounts: the chroot connection needs uid 0.
    const once = () => chroot.host(["ansible-playbook", "-i", `${chroot.root},`, "-c", "community.general.chroot", "-e", `@${vars}`, spec.playbook], {
        env: {
            ANSIBLE_HOST_KEY_CHECKING: "False",
            ANSIBLE_RETRY_FILES_ENABLED: "False",
            ANSIBLE_NOCOLOR: "1",
            ANSIBLE_FORCE_COLOR: "0",
            ANSIBLE_LOCAL_TEMP: tmp,
            ANSIBLE_REMOTE_TMP: "/tmp/.ansible",
            ANSIBLE_ROLES_PATH: (spec.ansibleRolesPath ?? []).join(":"),
            ANSIBLE_COLLECTIONS_PATH: [...(spec.ansibleCollectionsPath ?? []), "/usr/share/ansible/collections", "/usr/lib/python3/dist-packages"].join(":"),
            ANSIBLE_STDOUT_CALLBACK: "default",
            SOURCE_DATE_EPOCH: String(spec.sourceDateEpoch),
        },
        hint: "the recipe's playbook failed against the image root; the build log has Ansible's output",
    });
    const first = playRecap((await once()).stdout);
    if (!opts.verifyIdempotent) return { first };
    const second = playRecap((await once()).stdout);
    if (!second || second.changed > 0) {
        throw new Error(`${path.basename(spec.playbook)} is not idempotent: a second run against the same image changed ${second?.changed ?? "?"} task(s) ` +
            "(NFR-2); make those tasks declarative (state=present, creates=, changed_when) and see the build log for which ones");
    }
    log.info(`→ ${spec.name}: ${path.basename(spec.playbook)} converged: first run changed ${first?.changed ?? "?"}, second run changed 0`);
    return { first, second };
}

/** What makes two builds of the same inputs differ, and what every clone must regenerate, goes away here. */
export async function cleanup(chroot: Chroot, sourceDateEpoch: number): Promise<void> {
    const rootDir = chroot.root;
    const hostKeys = fs.readdirSync(path.join(rootDir, "etc/ssh")).filter((f) => f.startsWith("ssh_host_")).map((f) => `etc/ssh/${f}`);
    const removed = ["usr/sbin/policy-rc.d", ...hostKeys,
        // mmdebstrap (like debootstrap) copies the build host's resolver configuration in for apt: the image must not carry
        // the builder's DNS setup. The booted system's DHCP client writes its own.
        "etc/resolv.conf",
        "var/lib/dbus/machine-id", "var/lib/systemd/random-seed", "var/cache/ldconfig/aux-cache", "root/.bash_history",
        "var/cache/debconf/config.dat-old", "var/cache/debconf/templates.dat-old", "var/lib/dpkg/status-old",
        "var/lib/dpkg/diversions-old", "etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-", "etc/subuid-", "etc/subgid-"];
    // As the tree's root (its build namespace): the tree's files belong to its own
    // users (apt's _apt, daemons), which only its root may remove or truncate when the build runs without root. Caches
    // and temporary directories are emptied (kept), logs, which are per machine, keep their files with no content, and
    // machine-id (read-only; systemd makes one at first boot) and resolv.conf are left empty.
    await chroot.host(["sh", "-c", `umask 022 && cd "$1" && shift && rm -rf -- "$@" &&
        for d in var/lib/apt/lists var/cache/apt/archives tmp var/tmp run; do
            if [ -d "$d" ]; then find "$d" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +; fi
        done &&
        mkdir -p var/lib/apt/lists/partial &&
        find var/log -type f -exec truncate -s 0 {} + &&
        : > etc/machine-id && : > etc/resolv.conf`, "sh", rootDir, ...removed]);
    // Reproducible timestamps: nothing in the image is newer than SOURCE_DATE_EPOCH.
    await chroot.host(["find", rootDir, "-xdev", "-newermt", `@${sourceDateEpoch}`, "-exec", "touch", "--no-dereference", "--date", `@${sourceDateEpoch}`, "{}", "+"]);
}
