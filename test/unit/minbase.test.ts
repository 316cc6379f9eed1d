// lib/stages/rootfs.ts: the minbase tree's mmdebstrap command and its package files kept between builds.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { keepPackageFiles, mmdebstrapArgs, type RootfsSpec } from "../../lib/stages/rootfs";

const spec = {
    suite: "bookworm", mirror: "http://mirror.test/debian", securityMirror: "http://mirror.test/debian-security",
} as RootfsSpec;

describe("minbase tree (mmdebstrap)", () => {
    it("installs minbase from the suite's main archive into the root, merged /usr by Debian's hook, package files cached", () => {
        const args = mmdebstrapArgs(spec, "/b/root");
        assert.deepEqual(args.slice(-3), ["bookworm", "/b/root", "deb http://mirror.test/debian bookworm main"]);
        for (const a of ["--mode=root", "--variant=minbase", "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr", "--dpkgopt=force-unsafe-io",
            "--skip=download/empty", "--skip=essential/unlink", "--skip=cleanup/apt"]) assert.ok(args.includes(a), `${a} missing`);
        // The cache's path reaches the hook through the environment, never through shell quoting.
        const hook = args.find((a) => a.startsWith("--setup-hook="))!.slice("--setup-hook=".length);
        assert.match(hook, /find "\$IMAGE_FACTORY_MINBASE_DEBS" -maxdepth 1 -name "\*\.deb" -exec cp/);
    });

    it("the setup hook copies the cached package files, and only those, into the root (run by sh as mmdebstrap runs it)", async () => {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "minbase-hook-"));
        const cache = path.join(tmp, "cache dir");
        fs.mkdirSync(cache);
        fs.writeFileSync(path.join(cache, "a_1_all.deb"), "a");
        fs.writeFileSync(path.join(cache, "b_1_all.deb.partial"), "half");
        const hook = mmdebstrapArgs(spec, "/x").find((a) => a.startsWith("--setup-hook="))!.slice("--setup-hook=".length);
        await execa("sh", ["-c", hook, "exec", path.join(tmp, "root")], { env: { IMAGE_FACTORY_MINBASE_DEBS: cache } });
        assert.deepEqual(fs.readdirSync(path.join(tmp, "root/var/cache/apt/archives")), ["a_1_all.deb"]);
        fs.rmSync(tmp, { recursive: true, force: true });
    });

    it("a pinned snapshot: the snapshot's archive, without Valid-Until (its Release has long expired)", () => {
        const args = mmdebstrapArgs({ ...spec, snapshot: "20250520T000000Z", snapshotBase: "http://snap.test/" }, "/b/root");
        assert.equal(args[args.length - 1], "deb [check-valid-until=no] http://snap.test/archive/debian/20250520T000000Z bookworm main");
    });

    it("downloaded package files move into the cache whole (a file already there is kept); nothing else moves", () => {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "minbase-"));
        const archives = path.join(tmp, "root/var/cache/apt/archives");
        const cache = path.join(tmp, "cache");
        fs.mkdirSync(path.join(archives, "partial"), { recursive: true });
        fs.mkdirSync(cache);
        fs.writeFileSync(path.join(archives, "lock"), "");
        fs.writeFileSync(path.join(archives, "a_1_all.deb"), "new a");
        fs.writeFileSync(path.join(archives, "b_1_amd64.deb"), "b bytes");
        fs.writeFileSync(path.join(cache, "a_1_all.deb"), "kept a");
        keepPackageFiles(archives, cache);
        assert.deepEqual(fs.readdirSync(cache).sort(), ["a_1_all.deb", "b_1_amd64.deb"]);
        assert.equal(fs.readFileSync(path.join(cache, "a_1_all.deb"), "utf8"), "kept a");
        assert.equal(fs.readFileSync(path.join(cache, "b_1_amd64.deb"), "utf8"), "b bytes");
        assert.deepEqual(fs.readdirSync(archives).sort(), ["lock", "partial"], "the tree keeps no package file");
        fs.rmSync(tmp, { recursive: true, force: true });
    });
});
