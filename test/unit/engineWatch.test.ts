// An orphaned provider stops: a process that runs watchEngine and has a long-running child is orphaned by a
// SIGKILL of its parent (as the Pulumi CLI's death orphans the dynamic-provider process), and both it and its
// child are gone within seconds. Real processes, no mocks.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as path from "node:path";
import { descendants } from "../../lib/engineWatch";
import { REPO_ROOT } from "../helpers/setup";

const alive = (pid: number) => {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
};

async function until(ok: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!ok()) {
        if (Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 100));
    }
    return true;
}

describe("lib/engineWatch: an orphaned provider stops with its children", function () {
    this.timeout(60_000);

    it("SIGKILL of the parent: the watched process and its long-running child exit within seconds", async () => {
        // provider: watches its parent, starts a `sleep` as a build step would, and stays up (as a gRPC server does).
        const provider = `require(${JSON.stringify(path.join(REPO_ROOT, "lib", "engineWatch.ts"))}).watchEngine({ intervalMs: 100, graceMs: 1000 });` +
            "require('child_process').spawn('sleep', ['300'], { stdio: 'ignore' }); setInterval(() => undefined, 1000);";
        // engine: starts the provider, prints its pid, and waits to be killed.
        const engine = `const c = require('child_process').spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', ${JSON.stringify(provider)}], { stdio: ['ignore', 'ignore', 'inherit'] });` +
            "console.log(c.pid); setInterval(() => undefined, 1000);";
        const parent = execa(process.execPath, ["-e", engine], { cwd: REPO_ROOT, reject: false });
        const providerPid = await new Promise<number>((resolve) => parent.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
        assert.ok(await until(() => descendants(providerPid).length > 0, 15_000), "the provider's child never started");
        const [sleepPid] = descendants(providerPid);
        parent.kill("SIGKILL");
        await parent;
        assert.ok(await until(() => !alive(providerPid) && !alive(sleepPid), 10_000),
            `still running 10 s after the parent died: ${[providerPid, sleepPid].filter(alive).join(", ")}`);
    });

    it("a process whose parent lives is left alone (no false alarm)", async () => {
        const child = execa(process.execPath, ["-r", "ts-node/register/transpile-only", "-e",
            `require(${JSON.stringify(path.join(REPO_ROOT, "lib", "engineWatch.ts"))}).watchEngine({ intervalMs: 50, graceMs: 100 }); setTimeout(() => console.log('still here'), 1500);`],
        { cwd: REPO_ROOT });
        assert.equal((await child).stdout, "still here");
    });
});
