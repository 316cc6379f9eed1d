// The Packer builder (FR-1): `packer build` of the image folder's HCL2 template, run by execa under Pulumi with
// Packer's UI lines as progress. The qemu path boots a base qcow2 (another image of this factory or a catalog
// cloud image) from a copy, seeds cloud-init from a CD labelled cidata with a throw-away SSH key, lets Packer's
// Ansible provisioner shape it, and hands the qcow2 to the pipeline (recompressed, checksummed, validated).
// Plugins are pinned in the template's required_plugins and installed by tools/build.sh (PACKER_PLUGIN_PATH),
// so nothing is downloaded when a build runs.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { BuildLog } from "../buildlog";
import { run } from "../exec";
import { OfflineImage } from "../validation/inspect";
import { nocloudMetaData, nocloudUserData } from "../isoFormat";
import { consoleTail, GuestHangError, guestCpus, guestDeviceArgs, qemuProcessOf, shellLine, unlessGuestHangs, watchConsole } from "../guestVm";
import { convertQcow2 } from "./disk";
import { playRecaps } from "./rootfs";
import type { Builder } from "./steps";

const VAR_FILE = "image.pkrvars.json";
export const PACKER_KEY_COMMENT = "image-factory-packer-build";

export interface PackerQemuSpec {
    name: string;
    hostname: string;
    domain: string;
    /** Absolute paths: the image folder (Packer's working directory), its template and playbook. */
    imageDir: string;
    template: string;
    playbook?: string;
    user: { name: string; authorizedKeys: string[] };
    base: { id: string; version: string; sha256: string; path: string };
    diskSize: string;
    memoryMiB: number;
    cpus: number;
    vars: Record<string, unknown>;
    ansibleRolesPath: string[];
    ansibleCollectionsPath: string[];
    /** Project root: PACKER_PLUGIN_PATH defaults to its .tools/packer-plugins. */
    projectDir: string;
    sourceDateEpoch: number;
    buildKey: string;
    buildInfo: Record<string, unknown>;
}

interface PackerContext {
    spec: PackerQemuSpec;
    log: BuildLog;
    work: string;
    virt: { accel: "kvm" | "tcg"; reason: string };
    /** The VM's serial console: beside the build log, so it outlives the work directory (a failed build keeps it). */
    serialLog: string;
    /** The variables file the first step writes for `packer build`. */
    varFile: string;
    /** Where the template's output_directory and vm_name put the disk. */
    qcow2: string;
    pkgManifest: string;
}

/** FR-11: KVM or TCG, decided (and explained) by scripts/virt-check.sh. */
export function virtualisation(projectDir: string): { accel: "kvm" | "tcg"; reason: string } {
    try {
        const out = execFileSync("bash", [path.join(projectDir, "scripts/virt-check.sh"), "--json"], { encoding: "utf8" });
        const v = JSON.parse(out.trim().split("\n").pop() as string) as { accel: string; reason: string };
        return { accel: v.accel === "kvm" ? "kvm" : "tcg", reason: v.reason };
    } catch (err) {
        return { accel: "tcg", reason: `virtualisation check failed (${(err as Error).message.split("\n")[0]})` };
    }
}

export function packerEnv(projectDir: string): Record<string, string> {
    return {
        PACKER_PLUGIN_PATH: process.env.PACKER_PLUGIN_PATH ?? path.join(projectDir, ".tools/packer-plugins"),
        PACKER_CACHE_DIR: process.env.PACKER_CACHE_DIR ?? path.join(projectDir, ".cache/packer"),
        PACKER_CHECKPOINT_DISABLE: "1",
        PACKER_NO_COLOR: "1",
        CHECKPOINT_DISABLE: "1",
    };
}

/** The variables a qemu-path template receives: paths and names only, never a secret. */
export function qemuVariables(spec: PackerQemuSpec, work: string, accel: string, serialLog = path.join(work, "serial.log")): Record<string, string | number | string[][]> {
    const machine = guestDeviceArgs(accel);
    return {
        image_name: spec.name,
        base_image_url: `file://${spec.base.path}`,
        base_image_sha256: spec.base.sha256,
        output_dir: path.join(work, "output"),
        seed_dir: path.join(work, "seed"),
        ssh_username: spec.user.name,
        ssh_private_key_file: path.join(work, "ssh", "id_ed25519"),
        playbook: spec.playbook ?? path.join(spec.imageDir, "playbook.yml"),
        ansible_roles_path: spec.ansibleRolesPath.join(":"),
        ansible_collections_path: [...spec.ansibleCollectionsPath, "/usr/share/ansible/collections", "/usr/lib/python3/dist-packages"].join(":"),
        build_json: path.join(work, "build.json"),
        extra_vars_file: path.join(work, "ansible-vars.json"),
        accelerator: accel,
        disk_size: spec.diskSize,
        memory: spec.memoryMiB,
        cpus: guestCpus(accel, spec.cpus),
        // The CPU model and entropy device every VM of ours gets (lib/guestVm.ts says why), as qemuargs pairs.
        qemu_machine_args: machine.flatMap((a, i) => (i % 2 === 0 ? [[a, machine[i + 1]]] : [])),
        serial_log: serialLog,
    };
}

/** Writes everything the template's variables point at: seed, throw-away key, build info, Ansible vars. */
export async function prepareQemuInputs(spec: PackerQemuSpec, work: string, accel: string, log?: BuildLog, serialLog?: string): Promise<string> {
    const vars = qemuVariables(spec, work, accel, serialLog);
    fs.rmSync(String(vars.output_dir), { recursive: true, force: true }); // Packer refuses an existing output directory
    fs.mkdirSync(path.join(work, "ssh"), { recursive: true, mode: 0o700 });
    const key = String(vars.ssh_private_key_file);
    if (!fs.existsSync(key)) await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", PACKER_KEY_COMMENT, "-f", key], { log });
    const pub = fs.readFileSync(`${key}.pub`, "utf8").trim();
    fs.mkdirSync(String(vars.seed_dir), { recursive: true });
    const user = { ...spec.user, authorizedKeys: [...spec.user.authorizedKeys, pub] };
    fs.writeFileSync(path.join(String(vars.seed_dir), "user-data"), nocloudUserData({ hostname: spec.hostname, domain: spec.domain, user }));
    fs.writeFileSync(path.join(String(vars.seed_dir), "meta-data"), nocloudMetaData({ name: spec.name, hostname: spec.hostname, buildKey: spec.buildKey }));
    const base = { id: spec.base.id, version: spec.base.version, sha256: spec.base.sha256 };
    fs.writeFileSync(String(vars.build_json), `${JSON.stringify({ ...spec.buildInfo, base }, null, 2)}\n`);
    fs.writeFileSync(String(vars.extra_vars_file), JSON.stringify({ image_name: spec.name, bootstrap_user: spec.user.name, build_work_dir: work, ...spec.vars }));
    const varFile = path.join(work, VAR_FILE);
    fs.writeFileSync(varFile, `${JSON.stringify(vars, null, 2)}\n`);
    return varFile;
}

/** `packer validate` of a template with a var file: the same check CI runs on every template. */
export async function packerValidate(template: string, varFile: string, projectDir: string, log?: BuildLog): Promise<void> {
    await run("packer", ["validate", `-var-file=${varFile}`, path.basename(template)], {
        cwd: path.dirname(template), env: packerEnv(projectDir), log,
        hint: `fix ${path.relative(projectDir, template)} (packer validate); plugins come from tools/build.sh into .tools/packer-plugins`,
    });
}

/** Packer's UI lines ("==> qemu.image: Waiting for SSH...") and Ansible's task names become progress lines. */
function progressLines(log: BuildLog, label: string): (chunk: string) => void {
    let carry = "";
    return (chunk) => {
        const lines = (carry + chunk).split("\n");
        carry = lines.pop() ?? "";
        for (const l of lines) {
            const m = /==> \S+: (.*)$/.exec(l) ?? /\S+: (TASK \[.*\]|PLAY RECAP)/.exec(l);
            if (m) log.info(`→ ${label}: packer: ${m[1].replace(/\s*\*+$/, "").slice(0, 160)}`);
        }
    };
}

/**
 * NFR-2 for Packer builds: templates run their playbook twice (two identical Ansible provisioners); the second
 * run must change nothing. A template with a single Ansible provisioner is not checked (and says so).
 */
export function assertConverged(name: string, output: string, log?: BuildLog): void {
    const recaps = playRecaps(output);
    if (recaps.length < 2) {
        log?.info(`→ ${name}: ${recaps.length} Ansible run(s) in the Packer build: convergence not checked (add the provisioner twice to check it)`);
        return;
    }
    const [first, last] = [recaps[0], recaps[recaps.length - 1]];
    if (last.changed > 0) {
        throw new Error(`${name}: the playbook is not idempotent: its second run inside the Packer build changed ${last.changed} task(s) (NFR-2); ` +
            "make those tasks declarative (state=present, creates=, changed_when) and see the build log for which ones");
    }
    log?.info(`→ ${name}: playbook converged: first run changed ${first.changed}, second run changed 0`);
}

export const packerBuilder: Builder<PackerQemuSpec, PackerContext> = {
    open(spec, dirs, log) {
        if (!spec.base.path || !spec.base.sha256) throw new Error(`${spec.name}: the base image ${spec.base.id} has no file yet`);
        return {
            spec, log, work: dirs.work, virt: virtualisation(spec.projectDir), varFile: path.join(dirs.work, VAR_FILE),
            serialLog: path.join(path.dirname(log.file), "serial.log"),
            qcow2: path.join(dirs.work, "output", `${spec.name}.qcow2`), pkgManifest: path.join(dirs.work, "pkg-manifest.txt"),
        };
    },
    steps: [
        {
            name: "prepare seed CD, throw-away SSH key, variables; packer validate",
            async run({ spec, log, work, virt, serialLog }) {
                if (virt.accel === "tcg") log.info(`→ ${spec.name}: WARNING: Packer's VM runs under TCG (${virt.reason}); expect a build several times slower than with KVM`);
                fs.rmSync(serialLog, { force: true });
                const f = await prepareQemuInputs(spec, work, virt.accel, log, serialLog);
                await packerValidate(spec.template, f, spec.projectDir, log);
            },
        },
        {
            name: (c) => `packer build ${path.basename(c.spec.template)} (qemu, ${c.virt.accel})`,
            async run({ spec, log, varFile, qcow2, virt, serialLog }) {
                const onChunk = progressLines(log, spec.name);
                let output = "";
                // The VM's console is watched while Packer waits for SSH and provisions: a guest kernel that locks up,
                // stalls or panics ends the build at once, instead of after Packer's ssh_timeout (30 min).
                const watch = watchConsole(serialLog);
                const stop = new AbortController();
                const started = Date.now();
                const build = run("packer", ["build", "-color=false", "-on-error=cleanup", `-var-file=${varFile}`, path.basename(spec.template)], {
                    cwd: spec.imageDir,
                    env: { ...packerEnv(spec.projectDir), PACKER_LOG: "0" },
                    log,
                    abort: stop.signal,
                    onOutput: (chunk) => {
                        output += chunk;
                        onChunk(chunk);
                    },
                    hint: `packer build failed; the build log has Packer's output and ${serialLog} the VM's console`,
                });
                try {
                    await unlessGuestHangs(build, watch, async (hang) => {
                        const qemu = qemuProcessOf(serialLog);
                        const err = new GuestHangError(`${spec.name}: packer build`, hang, virt.accel, qemu && shellLine(qemu.argv), serialLog, (Date.now() - started) / 1000);
                        log.line(err.message);
                        // The VM first (it is Packer's child's child, and would outlive a Packer killed too hard), then
                        // Packer, whose interrupt handling removes its output directory (-on-error=cleanup).
                        if (qemu) process.kill(qemu.pid, "SIGKILL");
                        stop.abort();
                        return err;
                    });
                } catch (err) {
                    // Whatever ended the build, the VM's last words belong in the message.
                    if (!(err instanceof GuestHangError)) (err as Error).message += `\nconsole (${serialLog}, kept), last lines:\n${consoleTail(serialLog, 15)}`;
                    throw err;
                } finally {
                    watch.stop();
                }
                assertConverged(spec.name, output, log);
                if (!fs.existsSync(qcow2)) throw new Error(`packer finished but left no ${qcow2}: check output_directory and vm_name in ${spec.template}`);
            },
        },
        {
            name: "read the package manifest back from the image",
            async run({ work, qcow2, pkgManifest }) {
                const img = await OfflineImage.open(qcow2, { tmpDir: work });
                try {
                    const manifest = await img.readFile("/etc/image-factory/pkg-manifest.txt");
                    if (!manifest) throw new Error("the image has no /etc/image-factory/pkg-manifest.txt: the template's final shell provisioner must write it");
                    fs.writeFileSync(pkgManifest, manifest);
                } finally {
                    img.close();
                }
            },
        },
    ],
    // Recompressed: Packer's qcow2 is uncompressed, and every image ships the same way.
    finish: { name: "recompress the qcow2, check, sha256", run: (c, out) => convertQcow2(c.qcow2, "qcow2", out, c.log) },
    output: ({ spec, pkgManifest }) => ({ pkgManifest, base: { id: spec.base.id, version: spec.base.version, sha256: spec.base.sha256 } }),
};
