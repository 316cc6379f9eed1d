// lib/buildBudget.ts: builds start when their cores and memory are free, across processes.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { admitBuild, fits, machineBudget } from "../../lib/buildBudget";

describe("build budget (cores and memory shared by builds)", function () {
    this.timeout(30_000);
    let tmp: string;
    let prev: string | undefined;
    beforeEach(() => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-budget-"));
        prev = process.env.IMAGE_FACTORY_CACHE;
        process.env.IMAGE_FACTORY_CACHE = tmp;
    });
    afterEach(() => {
        if (prev === undefined) delete process.env.IMAGE_FACTORY_CACHE;
        else process.env.IMAGE_FACTORY_CACHE = prev;
        fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("fits: within cores and memory beside what runs; anything, when nothing runs", () => {
        const budget = { cpus: 2, memoryMiB: 4096 };
        assert.equal(fits({ cpus: 1, memoryMiB: 1024 }, [{ cpus: 1, memoryMiB: 1024 }], budget), true);
        assert.equal(fits({ cpus: 1, memoryMiB: 1024 }, [{ cpus: 1, memoryMiB: 1024 }, { cpus: 1, memoryMiB: 1024 }], budget), false, "cores");
        assert.equal(fits({ cpus: 1, memoryMiB: 2560 }, [{ cpus: 1, memoryMiB: 2048 }], budget), false, "memory");
        assert.equal(fits({ cpus: 8, memoryMiB: 65536 }, [], budget), true, "a build bigger than the machine runs alone");
    });

    it("a third one-core build on two cores waits for the first to finish, and says what it waits for", async () => {
        const budget = { cpus: 2, memoryMiB: 8192 };
        const need = { cpus: 1, memoryMiB: 1024 };
        const a = await admitBuild("a (rootfs)", need, undefined, { budget, pollMs: 20 });
        const b = await admitBuild("b (rootfs)", need, undefined, { budget, pollMs: 20 });
        const said: string[] = [];
        let cAdmitted = false;
        const c = admitBuild("c (rootfs)", need, (m) => said.push(m), { budget, pollMs: 20 }).then((leave) => {
            cAdmitted = true;
            return leave;
        });
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(cAdmitted, false);
        assert.equal(said.length, 1, "told once");
        assert.match(said[0], /c \(rootfs\): waiting for room to build \(needs 1 CPU, 1024 MiB; a \(rootfs\), b \(rootfs\) hold 2 of 2 CPU, 2048 of 8192 MiB; IMAGE_FACTORY_BUILD_CPUS/);
        await a();
        await (await c)();
        assert.equal(cAdmitted, true);
        await b();
        assert.deepEqual(JSON.parse(fs.readFileSync(path.join(tmp, "build-budget", "holders.json"), "utf8")), []);
    });

    it("a holder whose process died holds nothing", async () => {
        const dead = execa("true");
        await dead;
        fs.mkdirSync(path.join(tmp, "build-budget"), { recursive: true });
        fs.writeFileSync(path.join(tmp, "build-budget", "holders.json"), JSON.stringify([{ token: "x", pid: dead.pid, label: "gone (packer)", cpus: 2, memoryMiB: 4096 }]));
        const leave = await admitBuild("next (rootfs)", { cpus: 1, memoryMiB: 1024 }, () => assert.fail("should not wait"), { budget: { cpus: 2, memoryMiB: 4096 }, pollMs: 20 });
        await leave();
    });

    it("builds in another process count too", async () => {
        const script = `require("ts-node/register/transpile-only");
const { admitBuild } = require(${JSON.stringify(path.join(__dirname, "..", "..", "lib", "buildBudget"))});
admitBuild("other (packer)", { cpus: 2, memoryMiB: 2048 }, undefined, { budget: { cpus: 2, memoryMiB: 8192 } })
  .then(() => { console.log("admitted"); setTimeout(() => process.exit(0), 600); });`;
        const other = execa("node", ["-e", script], { env: { IMAGE_FACTORY_CACHE: tmp } });
        await new Promise<void>((resolve) => other.stdout?.on("data", (d: Buffer) => String(d).includes("admitted") && resolve()));
        const said: string[] = [];
        const t0 = Date.now();
        const leave = await admitBuild("mine (rootfs)", { cpus: 1, memoryMiB: 1024 }, (m) => said.push(m), { budget: { cpus: 2, memoryMiB: 8192 }, pollMs: 50 });
        assert.ok(Date.now() - t0 >= 300, "waited for the other process's build");
        assert.match(said[0] ?? "", /other \(packer\) holds 2 of 2 CPU/);
        await leave();
        await other;
    });

    it("the budget comes from IMAGE_FACTORY_BUILD_CPUS / _MEMORY_MIB, else the machine; a bad value is named", () => {
        assert.deepEqual(machineBudget({ IMAGE_FACTORY_BUILD_CPUS: "1", IMAGE_FACTORY_BUILD_MEMORY_MIB: "3000" }), { cpus: 1, memoryMiB: 3000 });
        assert.equal(machineBudget({}).cpus, os.availableParallelism());
        assert.throws(() => machineBudget({ IMAGE_FACTORY_BUILD_CPUS: "two" }), /IMAGE_FACTORY_BUILD_CPUS=two: expected a whole number of at least 1/);
    });
});
