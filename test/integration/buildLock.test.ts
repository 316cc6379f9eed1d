// Two stacks sharing one workDir take turns on one build: builds of the same image and key in two processes (real
// builds of the NoCloud seed ISO with xorriso) — one builds, the other waits and reuses its result; a lock left by a
// process that is gone is taken over; a lock held by a live process is waited for, named in the progress.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/setup";

interface Result { sha256: string; path: string; reused?: boolean; buildKey: string }

// A child that waits for a lock gives up after 10 minutes, not the 4 hours a build would wait: a failing test must not
// leave processes behind that keep mocha (and CI) running.
const buildOnce = (workDir: string) => execa("node", ["-r", "ts-node/register/transpile-only", path.join("test", "helpers", "buildOnce.ts"), "nocloud-seed-iso", workDir],
    { cwd: REPO_ROOT, reject: false, all: true, env: { IMAGE_FACTORY_BUILD_LOCK_WAIT_S: "600" } });
const resultOf = (out: string): Result => JSON.parse(out.trim().split("\n").pop() as string) as Result;

describe("build lock: builds of one key take turns across processes", function () {
    this.timeout(12 * 60_000);
    let workDir: string;
    beforeEach(() => {
        workDir = fs.mkdtempSync(path.join(os.tmpdir(), "if-buildlock-"));
    });
    afterEach(() => fs.rmSync(workDir, { recursive: true, force: true }));

    it("two processes on one key: one builds, the other waits for it and reuses the build", async () => {
        const locks = () => fs.readdirSync(workDir, { recursive: true }).map(String).filter((f) => path.basename(f) === ".lock");
        // Minutes, not seconds: on a loaded 2-core runner a cold ts-node start and the build's planning took over 60 s once.
        const until = async (what: string, ok: () => boolean, out: () => string) => {
            for (const end = Date.now() + 240_000; !ok(); await new Promise((r) => setTimeout(r, 5))) {
                if (Date.now() > end) throw new Error(`timed out: ${what}; its output so far:\n${out()}`);
            }
        };
        const a = buildOnce(workDir);
        let aOut = "";
        a.all?.on("data", (c: Buffer) => void (aOut += c.toString()));
        let b: ReturnType<typeof buildOnce> | undefined;
        let bOut = ""; // (what this listener reads is not in execa's buffered stdout)
        let ra: Awaited<ReturnType<typeof buildOnce>>;
        let rb: Awaited<ReturnType<typeof buildOnce>>;
        try {
            await until("the first build's lock", () => locks().length > 0, () => aOut);
            process.kill(a.pid as number, "SIGSTOP"); // the first build holds its lock while the second one arrives
            b = buildOnce(workDir);
            b.stdout?.on("data", (c: Buffer) => void (bOut += c.toString()));
            await until("the second build to wait", () => /waiting for another build/.test(bOut), () => bOut);
            process.kill(a.pid as number, "SIGCONT");
            [ra, rb] = await Promise.all([a, b]);
        } catch (e) {
            // Never leave a stopped or waiting build behind: mocha would wait for it, and CI with it.
            a.kill("SIGCONT");
            a.kill("SIGKILL");
            b?.kill("SIGKILL");
            await Promise.allSettled([a, b]);
            throw e;
        }
        assert.equal(ra.exitCode, 0, ra.all);
        assert.equal(rb.exitCode, 0, rb.all);
        const [x, y] = [resultOf(ra.stdout), resultOf(rb.stdout)];
        assert.equal(x.sha256, y.sha256);
        assert.equal(x.path, y.path);
        assert.match(ra.stdout, /: built in /);
        assert.doesNotMatch(rb.stdout, /: built in /, "the second process must not build again");
        assert.match(bOut, new RegExp(`waiting for another build of the same image and key \\(pid ${a.pid}\\) to finish`));
        assert.match(rb.stdout, /was made by the build we waited for \(v2026\.01\.01\), reusing it/);
        assert.deepEqual(locks(), [], "the lock is released");
    });

    it("a lock held by a live process is waited for (and named); one left by a dead process is taken over", async () => {
        // Where the build will lock: run once to learn the key's directory, then empty it but for a lock.
        const first = await buildOnce(workDir);
        assert.equal(first.exitCode, 0, first.all);
        const dir = path.dirname(resultOf(first.stdout).path);
        fs.rmSync(dir, { recursive: true, force: true });
        fs.mkdirSync(dir, { recursive: true });

        const holder = execa("sleep", ["3"]);
        fs.writeFileSync(path.join(dir, ".lock"), `${holder.pid} held-by-another-stack`);
        const t0 = Date.now();
        const waited = await buildOnce(workDir);
        assert.equal(waited.exitCode, 0, waited.all);
        assert.match(waited.stdout, new RegExp(`waiting for another build of the same image and key \\(pid ${holder.pid}\\) to finish`));
        assert.ok(Date.now() - t0 >= 2500, "it did not wait for the holder");
        assert.match(waited.stdout, /: built in /);
        await holder;

        fs.rmSync(dir, { recursive: true, force: true });
        fs.mkdirSync(dir, { recursive: true });
        const dead = await execa("sh", ["-c", "echo $$"]);
        fs.writeFileSync(path.join(dir, ".lock"), `${dead.stdout.trim()} left-by-a-dead-process`);
        const took = await buildOnce(workDir);
        assert.equal(took.exitCode, 0, took.all);
        assert.doesNotMatch(took.stdout, /waiting for another build/);
        assert.match(took.stdout, /: built in /);
    });
});
