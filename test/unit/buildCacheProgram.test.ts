// factory:buildCache in the program (mocks): off, nothing of it is registered; with push, every image the stack builds
// itself gets a BuildCacheEntry with its build key and its gate's result (none for reused or node-built images); with
// pull, every ImageBuild is given the cache's settings, the trusted keys read from their files.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runProgram, stackConfig } from "../helpers/mockProgram";
import { buildCacheMatrix } from "../../bin/list-images";
import { parseConfig, readNamespace } from "../../lib/config";

const DYN = "pulumi-nodejs:dynamic/image-factory:";
const KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ0test\n-----END PGP PUBLIC KEY BLOCK-----\n";

describe("factory:buildCache in the program (mocks)", function () {
    this.timeout(180_000);
    let dir: string;
    let saved: Record<string, string | undefined>;
    before(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-cacheprog-"));
        fs.writeFileSync(path.join(dir, "lab.asc"), KEY);
        saved = { EVIDENCE_SIGN: process.env.EVIDENCE_SIGN, EVIDENCE_GPG_KEY: process.env.EVIDENCE_GPG_KEY };
        // Pushing signs with the evidence key: without one, up is refused (test/integration/buildCache.test.ts).
        process.env.EVIDENCE_SIGN = "1";
        process.env.EVIDENCE_GPG_KEY = "lab@test.invalid";
    });
    after(() => {
        for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
        fs.rmSync(dir, { recursive: true, force: true });
    });
    // Port 9 (discard) on loopback: a lookup, should one be made, is refused at once instead of leaving the machine.
    const cache = (o: { pull: boolean; push: boolean }) => ({ "factory:buildCache": { registry: "127.0.0.1:9", repository: "deevnet/images", ...o, trustedKeys: [path.join(dir, "lab.asc")] } });

    it("off: no BuildCacheEntry, and no ImageBuild is given a cache", async () => {
        const run = await runProgram("dvnt", stackConfig("dvnt"));
        assert.equal(run.ofType(`${DYN}BuildCacheEntry`).length, 0);
        assert.ok(run.ofType(`${DYN}ImageBuild`).length > 0);
        for (const b of run.ofType(`${DYN}ImageBuild`)) assert.equal(b.inputs.buildCache, undefined, b.name);
    });

    it("push: one entry per image dvnt builds itself, with the build's key and the gate's result", async () => {
        const run = await runProgram("dvnt", { ...stackConfig("dvnt"), ...cache({ pull: false, push: true }) });
        const entries = run.ofType(`${DYN}BuildCacheEntry`);
        const builds = run.ofType(`${DYN}ImageBuild`);
        assert.deepEqual(entries.map((e) => e.name).sort(), builds.map((b) => b.name.replace(/-build$/, "-build-cache")).sort());
        assert.ok(!entries.some((e) => e.name.startsWith("debian-12-minimal-pve")), "a template built on the node has no file to cache");
        for (const e of entries) {
            const b = builds.find((x) => x.name === e.name.replace(/-build-cache$/, "-build"));
            assert.equal(e.inputs.buildKey, b?.inputs.buildKey);
            assert.equal((e.inputs.gate as { passed: boolean }).passed, true);
            assert.equal((e.inputs.cache as { repository: string }).repository, "deevnet/images/build-cache");
            assert.deepEqual((e.inputs.cache as { trustedKeys: string[] }).trustedKeys, [KEY]);
            assert.equal((e.inputs.sign as { keyId: string }).keyId, "lab@test.invalid");
        }
        for (const b of builds) assert.equal(b.inputs.buildCache, undefined, "push alone does not pull");
    });

    it("pull: every ImageBuild is given the cache (registry, repository, trusted keys, where its boot report and evidence go)", async () => {
        const run = await runProgram("local", { ...stackConfig("local"), ...cache({ pull: true, push: false }) });
        const builds = run.ofType(`${DYN}ImageBuild`);
        assert.ok(builds.length > 0);
        for (const b of builds) {
            const c = b.inputs.buildCache as { registry: string; repository: string; trustedKeys: string[]; pull: boolean; scratchDir: string; evidenceRoot: string };
            assert.equal(c.registry, "127.0.0.1:9");
            assert.equal(c.repository, "deevnet/images/build-cache");
            assert.deepEqual(c.trustedKeys, [KEY]);
            assert.equal(c.pull, true);
            assert.match(c.scratchDir, /[/]validate$/);
            assert.ok(path.isAbsolute(c.evidenceRoot));
        }
        assert.equal(run.ofType(`${DYN}BuildCacheEntry`).length, 0);
    });

    it("the up workflow's matrix: the images a pushing stack builds itself; none for a stack that does not push", () => {
        const config = (stack: string, extra: Record<string, unknown>) => parseConfig(readNamespace(Object.fromEntries(
            Object.entries({ ...stackConfig(stack), ...extra }).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]))), { OCI_REGISTRY: "oci.example.test" });
        assert.deepEqual(buildCacheMatrix(config("dvnt", {})), []);
        assert.deepEqual(buildCacheMatrix(config("dvnt", cache({ pull: true, push: false }))), []);
        assert.deepEqual(buildCacheMatrix(config("dvnt", cache({ pull: true, push: true }))),
            ["debian-12-minimal", "builder-node", "debian-12-installer-iso", "nocloud-seed-iso", "debian-12-platform", "debian-12-services", "sdr-pi", "music-detector-pi"]);
        // dvntm builds nothing it reuses from dvnt
        const dvntm = config("dvntm", cache({ pull: true, push: true }));
        assert.ok(buildCacheMatrix(dvntm).every((n) => !(dvntm.reuse?.images ?? []).includes(n)));
    });

    it("a trusted key that is missing or not an armored public key fails the program, naming the key and the fix", async () => {
        fs.writeFileSync(path.join(dir, "not-a-key.asc"), "ssh-ed25519 AAAA");
        for (const [file, want] of [[path.join(dir, "absent.asc"), /trustedKeys\[0\] = ".*absent\.asc": no such file \(export the lab's evidence key with gpg --armor --export/],
            [path.join(dir, "not-a-key.asc"), /trustedKeys\[0\] = ".*not-a-key\.asc": is not an armored OpenPGP public key/]] as const) {
            const err = await runProgram("local", { ...stackConfig("local"), "factory:buildCache": { registry: "127.0.0.1:9", repository: "x", trustedKeys: [file] } }).then(() => undefined, (e: Error) => e);
            assert.ok(err, "the program ran");
            assert.match(String(err?.message), want);
        }
    });
});
