// lib/stages/treeCache.ts: image roots kept as tars named by their inputs, unpacked by a later build.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { BuildLog } from "../../lib/buildlog";
import { sha256Hex } from "../../lib/sha256";
import { nsRun } from "../../lib/stages/namespace";
import { keepTree, releaseDigest, restoreTree, treeKey, treesDir, TREES_KEPT } from "../../lib/stages/treeCache";

function listing(root: string): string[] {
    const out: string[] = [];
    const walk = (rel: string) => {
        for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
            const r = path.join(rel, name);
            const st = fs.lstatSync(path.join(root, r));
            const what = st.isSymbolicLink() ? `-> ${fs.readlinkSync(path.join(root, r))}`
                : st.isDirectory() ? "dir" : sha256Hex(fs.readFileSync(path.join(root, r)));
            out.push(`${r} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${what}`);
            if (st.isDirectory()) walk(r);
        }
    };
    walk("");
    return out;
}

describe("tree cache (kept image roots)", function () {
    this.timeout(30_000);
    let tmp: string;
    let log: BuildLog;
    beforeEach(() => {
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "if-trees-"));
        log = new BuildLog(path.join(tmp, "build.log"), "test");
    });
    afterEach(() => {
        log.close();
        fs.rmSync(tmp, { recursive: true, force: true });
    });

    function makeRoot(dir: string): void {
        fs.mkdirSync(path.join(dir, "etc/ssh"), { recursive: true });
        fs.writeFileSync(path.join(dir, "etc/hostname"), "debian\n");
        fs.writeFileSync(path.join(dir, "etc/ssh/secret"), "600\n", { mode: 0o600 });
        fs.chmodSync(path.join(dir, "etc/ssh/secret"), 0o600);
        fs.mkdirSync(path.join(dir, "tmp"), { mode: 0o1777 });
        fs.chmodSync(path.join(dir, "tmp"), 0o1777);
        fs.symlinkSync("/etc/hostname", path.join(dir, "hostname-link"));
    }

    /** Owner of a tree's file as the tree's root sees it (its build namespace, where a build gives owners). */
    const owner = async (file: string) => (await nsRun(["stat", "-c", "%u:%g", file])).stdout.trim();

    it("keeps a tree under its key and unpacks the same files, modes, owners and links into an empty root", async () => {
        const made = path.join(tmp, "made");
        makeRoot(made);
        await nsRun(["chown", "4321:1234", path.join(made, "etc/hostname")]);
        const key = treeKey({ suite: "bookworm", release: "abc" });
        await keepTree(path.join(tmp, "cache"), key, made, log);
        assert.ok(fs.existsSync(path.join(tmp, "cache", `${key}.tar`)));
        assert.deepEqual(fs.readdirSync(path.join(tmp, "cache")), [`${key}.tar`], "no .partial left");
        const again = path.join(tmp, "again");
        fs.mkdirSync(again);
        assert.equal(await restoreTree(path.join(tmp, "cache"), key, again, log), true);
        assert.deepEqual(listing(again), listing(made));
        assert.equal(await owner(path.join(again, "etc/hostname")), "4321:1234", "owners by number, as the image has them");
    });

    it("finds nothing without a key, for another key, or after the inputs change", async () => {
        const made = path.join(tmp, "made");
        makeRoot(made);
        const cache = path.join(tmp, "cache");
        await keepTree(cache, treeKey({ packages: ["sudo"] }), made, log);
        const empty = path.join(tmp, "empty");
        fs.mkdirSync(empty);
        assert.equal(await restoreTree(cache, undefined, empty, log), false);
        assert.equal(await restoreTree(cache, treeKey({ packages: ["sudo", "less"] }), empty, log), false);
        assert.notEqual(treeKey({ a: 1, b: 2 }), treeKey({ a: 1, b: 3 }));
        assert.equal(treeKey({ a: 1, b: 2 }), treeKey({ b: 2, a: 1 }), "keys are canonical JSON: field order does not count");
        assert.deepEqual(fs.readdirSync(empty), []);
    });

    it("a damaged tree is removed and reported as missing, leaving the root empty for mmdebstrap", async () => {
        const made = path.join(tmp, "made");
        makeRoot(made);
        const cache = path.join(tmp, "cache");
        const key = treeKey({ damaged: true });
        await keepTree(cache, key, made, log);
        const file = path.join(cache, `${key}.tar`);
        fs.truncateSync(file, 700); // cut inside the first member
        const root = path.join(tmp, "root");
        fs.mkdirSync(root);
        assert.equal(await restoreTree(cache, key, root, log), false);
        assert.equal(fs.existsSync(file), false);
        assert.deepEqual(fs.readdirSync(root), []);
        assert.match(fs.readFileSync(path.join(tmp, "build.log"), "utf8"), /could not be unpacked .*building the tree again/);
    });

    it(`keeps the ${TREES_KEPT} most recently used trees and removes a dead writer's .partial`, async () => {
        const made = path.join(tmp, "made");
        makeRoot(made);
        const cache = path.join(tmp, "cache");
        const dir = cache;
        const keys = Array.from({ length: TREES_KEPT }, (_, i) => treeKey({ i }));
        for (const [i, k] of keys.entries()) {
            await keepTree(cache, k, made, log);
            const t = new Date(Date.now() - (100 - i) * 60_000); // each newer than the one before
            fs.utimesSync(path.join(dir, `${k}.tar`), t, t);
        }
        // Using the oldest makes it the newest: the second-oldest goes when the next one is kept.
        const scratch = path.join(tmp, "scratch");
        fs.mkdirSync(scratch);
        assert.equal(await restoreTree(cache, keys[0], scratch, log), true);
        fs.writeFileSync(path.join(dir, `${keys[0]}.tar.999999999.partial`), "left by a build that died");
        await keepTree(cache, treeKey({ i: "last" }), made, log);
        const left = fs.readdirSync(dir).sort();
        assert.equal(left.length, TREES_KEPT);
        assert.ok(left.includes(`${keys[0]}.tar`), "the tree used last is kept");
        assert.ok(!left.includes(`${keys[1]}.tar`), "the least recently used tree is removed");
        assert.ok(!left.some((f) => f.endsWith(".partial")));
    });

    it("trees live in IMAGE_FACTORY_TREES, else in the per-user cache; off keeps none", () => {
        assert.equal(treesDir({ IMAGE_FACTORY_TREES: "/srv/trees" }), "/srv/trees");
        assert.equal(treesDir({ IMAGE_FACTORY_CACHE: "/var/cache/if" }), "/var/cache/if/rootfs-trees");
        assert.equal(treesDir({ IMAGE_FACTORY_TREES: "off", IMAGE_FACTORY_CACHE: "/var/cache/if" }), undefined);
    });

    it("releaseDigest is the sha256 of the suite's InRelease; a 404 or a dead mirror gives no digest (no caching)", async () => {
        const body = "-----BEGIN PGP SIGNED MESSAGE-----\nSuite: stable\n";
        const asked: string[] = [];
        const server = http.createServer((req, res) => {
            asked.push(req.url ?? "");
            if (req.url === "/debian/dists/bookworm/InRelease") res.end(body);
            else res.writeHead(404).end();
        });
        await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
        const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/debian/`;
        try {
            assert.equal(await releaseDigest(base, "bookworm"), sha256Hex(body));
            assert.equal(await releaseDigest(base, "bookworm-updates"), undefined);
            assert.deepEqual(asked, ["/debian/dists/bookworm/InRelease", "/debian/dists/bookworm-updates/InRelease"]);
        } finally {
            server.close();
        }
        assert.equal(await releaseDigest(base, "bookworm", 2000), undefined);
    });
});
