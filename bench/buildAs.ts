// One build of the local stack's first image with fixed inputs (version, build time), in this process or, from root,
// as another user (setpriv drops to the user's uid and gids; the build then runs in that user's build namespace, as
// every build without root does). bench/reproducibility.ts and test/e2e/unprivilegedBuild.test.ts compare the two.
//   node -r ts-node/register/transpile-only bench/buildAs.ts --one <workDir> <packageCacheDir>   (prints the result as JSON)
import execa from "execa";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveDebianSource } from "../lib/aptSources";
import { parseConfig, readNamespace, resolveAuthorizedKeys } from "../lib/config";
import { loadRecipe } from "../lib/recipe";
import { buildImage, type BuildResult } from "../lib/stages/pipeline";
import { planBuild, withBase } from "../lib/stages/plan";

export const projectDir = path.resolve(__dirname, "..");

export function localConfig() {
    const text = fs.readFileSync(path.join(projectDir, "Pulumi.local.yaml"), "utf8");
    // Minimal YAML reading of our own file: the keys we need are plain.
    const images = /factory:images:\n((?:\s+- .+\n)+)/.exec(text)?.[1].split("\n").map((l) => l.replace(/^\s*- /, "").trim()).filter(Boolean) ?? [];
    return parseConfig(readNamespace({ "factory:lab": "local", "factory:images": JSON.stringify(images),
        "factory:bootstrapUser": JSON.stringify({ sshAuthorizedKeyFiles: [".cache/local-ssh/id_ed25519.pub"] }) }));
}

/** A build plan with the local stack's settings (domain, Debian mirror, bootstrap user); base for a pi recipe. */
function localPlan(image: string, workDir: string, base?: { sha256: string }) {
    const config = localConfig();
    return planBuild({
        recipe: loadRecipe(image), projectDir, workDir, domain: config.domain, debian: resolveDebianSource(config.debian, true),
        bootstrapUser: { name: config.bootstrapUser.name, authorizedKeys: resolveAuthorizedKeys(config.bootstrapUser, projectDir, config.lab) },
        ...(base ? { base: { id: "raspios-fixture", version: "test", identity: base.sha256 } } : {}),
    });
}

/** One build of the local stack's first image into workDir, with a fixed version and build time. */
export async function buildOnce(workDir: string, cacheDir: string, tag: string): Promise<BuildResult> {
    const plan = localPlan(localConfig().images[0], workDir);
    // Share the package cache, and record the same build time, so only the build itself can differ.
    plan.request.cacheDir = cacheDir;
    return buildImage({ ...plan.request, version: "v2000.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: "fixed" } },
        (m) => console.error(`[${tag}] ${m}`));
}

/**
 * One build of sdr-pi from the given base image (a raw Raspberry Pi OS-shaped disk), with fixed inputs. playbook
 * false leaves the recipe's playbook out: what root and a user could do differently is the builder's own work
 * (unpack, configure, mtools, mkfs), and the playbook runs through the same chroot connection as every image's.
 */
export async function buildPiOnce(workDir: string, base: { path: string; sha256: string }, tag: string, o: { playbook?: boolean } = {}): Promise<BuildResult> {
    const req = withBase(localPlan("sdr-pi", workDir, base).request, base);
    if (req.builder !== "pi") throw new Error("sdr-pi is not a pi recipe");
    // (Its build key still names the playbook: these builds stay in their own work directories and are never published.)
    const pi = o.playbook === false ? { ...req.pi, playbook: undefined } : req.pi;
    return buildImage({ ...req, pi, version: "v2000.01.01", buildInfo: { ...req.buildInfo, buildTime: "fixed" } }, (m) => console.error(`[${tag}] ${m}`));
}

export interface UserBuild {
    uid: number;
    gid: number;
    /** Its own home: package cache (a copy of the given one), per-user caches, work directory. */
    home: string;
    workDir: string;
    /** The build, as a child process: its stdout is the result as JSON. pi: sdr-pi from that base, without its playbook. */
    start(onProgress?: (line: string) => void, pi?: { path: string; sha256: string }): execa.ExecaChildProcess;
}

/** Prepares a build as `user` (run as root): its home under `dir`, the package files copied from `packageCache`. */
export function userBuild(user: string, dir: string, packageCache?: string): UserBuild {
    const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8" }).trim());
    const home = path.join(dir, user);
    fs.mkdirSync(path.join(home, "cache"), { recursive: true });
    fs.chmodSync(dir, 0o755); // mkdtemp's 0700 would keep the user out
    // The same package files as the root build had, so neither downloads more than the other.
    if (packageCache && fs.existsSync(packageCache)) execFileSync("cp", ["-a", `${packageCache}/.`, path.join(home, "cache")]);
    execFileSync("chown", ["-R", `${uid}:${gid}`, home]);
    for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
        if ((fs.statSync(d).mode & 0o001) === 0) throw new Error(`${user} cannot reach ${dir}: ${d} is not searchable by others (chmod o+x ${d})`);
    }
    const workDir = path.join(home, "work");
    return {
        uid, gid, home, workDir,
        start(onProgress, pi) {
            const what = pi ? ["--one-pi", workDir, pi.path, pi.sha256] : ["--one", workDir, path.join(home, "cache")];
            const child = execa("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "--", process.execPath, "-r", "ts-node/register/transpile-only",
                __filename, ...what], {
                cwd: projectDir,
                env: {
                    ...process.env, HOME: home, USER: user, LOGNAME: user,
                    IMAGE_FACTORY_CACHE: path.join(home, "factory-cache"), IMAGE_FACTORY_TREES: path.join(home, "trees"),
                },
            });
            child.stderr?.on("data", (c: Buffer) => {
                for (const l of c.toString().split("\n")) if (l) onProgress?.(l);
            });
            return child;
        },
    };
}

if (require.main === module && (process.argv[2] === "--one" || process.argv[2] === "--one-pi")) {
    const [mode, workDir, a, b] = process.argv.slice(2);
    const build = mode === "--one" ? buildOnce(workDir, a, os.userInfo().username)
        : buildPiOnce(workDir, { path: a, sha256: b }, os.userInfo().username, { playbook: false });
    build.then((r) => process.stdout.write(JSON.stringify(r)), (e: Error) => {
        console.error(e.message);
        process.exit(1);
    });
}
