// @slow: GithubReleaseAsset and release metadata through `pulumi up --stack local`, configured to a loopback
// server that implements the GitHub REST endpoints used (releases, assets, uploads) and keeps the uploaded bytes.
import { strict as assert } from "node:assert";
import Ajv2020 from "ajv/dist/2020";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { provider as releaseProvider } from "../../providers/githubRelease";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";
import { localStack, type LocalStack } from "../helpers/localStack";
import { REPO_ROOT } from "../helpers/setup";

interface ImageOut { version: string; sha256: string; size: number; releaseUrl: string; releaseAssetUrl: string; releaseSha256Url: string; toolsJson: string; storePath: string }

/** GET, following redirects: GitHub answers browser downloads with a 302 to the asset's storage. */
function get(url: string, redirects = 3): Promise<Buffer> {
    return new Promise((resolve, reject) => {
        http.get(url, (res) => {
            if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && res.headers.location && redirects > 0) {
                res.resume();
                return resolve(get(new URL(res.headers.location, url).toString(), redirects - 1));
            }
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
        }).on("error", reject);
    });
}

describe("GithubReleaseAsset and release metadata through pulumi up @slow", function () {
    this.timeout(1_800_000);
    const token = "ghp_" + "LocalFakeToken0123456789abcdefABCDEFgh";
    let gh: FakeGithub;
    let env: LocalStack;
    let image: ImageOut;

    before(async () => {
        gh = await startFakeGithub({ token, repos: [["deevnet", "images"]] });
        env = await localStack({
            config: [["factory:release", JSON.stringify({ owner: "deevnet", repo: "images", apiUrl: gh.url })]],
            env: { GITHUB_TOKEN: token, IMAGE_FACTORY_GITHUB_RETRY_MS: "20" },
        });
    });
    after(async () => {
        await env?.close();
        await gh?.close();
    });

    it("publishes: stored bytes match the output sha256, a 500 on the first upload is retried, the release is a draft until all assets are up", async () => {
        gh.inject({ method: "POST", path: /^\/uploads\/.*\/assets$/, status: 500, times: 1 });
        const up = await env.project.upEvents("local");
        assert.equal(up.result, "succeeded");
        image = ((await env.project.outputs("local")).images as Record<string, ImageOut>)["debian-12-minimal"];
        const name = `debian-12-minimal-${image.version}.qcow2`;
        const bytes = gh.assetBytes("deevnet", "images", image.version, name);
        assert.ok(bytes, "no asset uploaded");
        assert.equal(crypto.createHash("sha256").update(bytes).digest("hex"), image.sha256);
        assert.equal(bytes.length, image.size);
        assert.equal(image.releaseAssetUrl, `${gh.url}/deevnet/images/releases/download/${image.version}/${name}`);

        const log = gh.requests.map((r) => `${r.method} ${r.path} ${r.status}`);
        const create = log.findIndex((l) => /^POST \/repos\/deevnet\/images\/releases 201$/.test(l));
        const uploads = log.map((l, i) => (/^POST \/uploads\/.* 201$/.test(l) ? i : -1)).filter((i) => i >= 0);
        const publish = log.findIndex((l) => /^PATCH \/repos\/deevnet\/images\/releases\/\d+ 200$/.test(l));
        assert.ok(create >= 0 && uploads.length === 2 && publish > Math.max(...uploads) && create < Math.min(...uploads), log.join("\n"));
        assert.ok(log.some((l) => /^POST \/uploads\/.* 500$/.test(l)), "the injected 500 was not hit");
        assert.equal(gh.releases("deevnet", "images")[0].draft, false);
    });

    it("the .sha256 asset verifies the downloaded qcow2 with sha256sum -c", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-dl-"));
        try {
            const name = `debian-12-minimal-${image.version}.qcow2`;
            fs.writeFileSync(path.join(dir, name), await get(image.releaseAssetUrl));
            fs.writeFileSync(path.join(dir, `${name}.sha256`), await get(image.releaseSha256Url));
            const r = await execa("sha256sum", ["-c", `${name}.sha256`], { cwd: dir });
            assert.equal(r.stdout, `${name}: OK`);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("writes schema-valid release metadata, a changelog entry and a tools.json that matches the published file", async () => {
        const dir = env.project.dir;
        const ajv = new Ajv2020({ strict: true });
        ajv.addSchema(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "schemas", "tools.schema.json"), "utf8")));
        const validate = ajv.compile(JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "schemas", "release.schema.json"), "utf8")));
        const rel = JSON.parse(fs.readFileSync(path.join(dir, "releases", `${image.version}.json`), "utf8")) as { images: Record<string, { qcow2: { assetUrl: string }; releaseUrl: string }> };
        assert.ok(validate(rel), JSON.stringify(validate.errors));
        const entry = rel.images["debian-12-minimal"];
        assert.equal(entry.qcow2.assetUrl, image.releaseAssetUrl);
        assert.equal(entry.releaseUrl, image.releaseUrl);
        assert.match(fs.readFileSync(path.join(dir, "releases", `${image.version}.md`), "utf8"), new RegExp(`\\| sha256 \\| \`${image.sha256}\` \\|`));
        assert.match(fs.readFileSync(path.join(dir, "docs", "releases.md"), "utf8"), new RegExp(`## ${image.version.replace(/\./g, "\\.")} — debian-12-minimal`));
        const tools = JSON.parse(fs.readFileSync(path.join(dir, "manifests", "tools.json"), "utf8"));
        assert.deepEqual(tools.image, { name: "debian-12-minimal", tarball: "", sha256: "", qcow2: image.releaseAssetUrl, qcow2_sha256: image.sha256 });
        const published = crypto.createHash("sha256").update(await get(tools.image.qcow2)).digest("hex");
        assert.equal(published, tools.image.qcow2_sha256, "tools.json does not match the published file");
        assert.ok(fs.existsSync(path.join(dir, "releases", "manifests", `debian-12-minimal-${image.version}.txt`)));
    });

    it("a re-run uploads nothing", async () => {
        const before = gh.requests.length;
        const up = await env.project.upEvents("local");
        assert.deepEqual(Object.keys(up.changes), ["same"], JSON.stringify(up.changes));
        assert.deepEqual(gh.requests.slice(before).filter((r) => r.method !== "GET"), []);
    });

    it("pulumi refresh sees a deleted asset, and the next up uploads it again", async () => {
        const rel = gh.releases("deevnet", "images")[0];
        const asset = rel.assets.find((a) => a.name.endsWith(".qcow2"))!;
        const del = await fetch(`${gh.url}/repos/deevnet/images/releases/assets/${asset.id}`, { method: "DELETE", headers: { authorization: `token ${token}` } });
        assert.equal(del.status, 204);
        await env.project.pulumi(["refresh", "--stack", "local", "--yes"]);
        const state = await env.project.exportState("local");
        assert.ok(!(state.deployment.resources ?? []).some((r) => r.type === "pulumi-nodejs:dynamic/image-factory:GithubReleaseUpload"));
        await env.project.upEvents("local");
        const bytes = gh.assetBytes("deevnet", "images", image.version, `debian-12-minimal-${image.version}.qcow2`);
        assert.equal(crypto.createHash("sha256").update(bytes!).digest("hex"), image.sha256);
    });

    it("a changed image replaces the asset of the same name (the provider, as the engine calls it on replace)", async () => {
        const file = path.join(os.tmpdir(), `if-changed-${Date.now()}.qcow2`);
        fs.writeFileSync(file, crypto.randomBytes(4096));
        const sha = crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
        try {
            const name = `debian-12-minimal-${image.version}.qcow2`;
            const r = await releaseProvider.create!({ apiUrl: gh.url, owner: "deevnet", repo: "images", token, tag: image.version, releaseName: image.version, body: "",
                file, fileName: name, sha256: sha, size: 4096, deleteOnDestroy: false });
            assert.equal(crypto.createHash("sha256").update(gh.assetBytes("deevnet", "images", image.version, name)!).digest("hex"), sha);
            assert.equal(gh.assetBytes("deevnet", "images", image.version, `${name}.sha256`)!.toString(), `${sha}  ${name}\n`);
            assert.equal(gh.releases("deevnet", "images")[0].assets.filter((a) => a.name === name).length, 1);
            assert.equal(typeof r.outs?.assetId, "number");
        } finally {
            fs.rmSync(file, { force: true });
        }
    });

    it("a wrong token fails with GitHub's 401 and the fix, and nothing is half-written in state", async () => {
        const other = await localStack({
            config: [["factory:release", JSON.stringify({ owner: "deevnet", repo: "images", apiUrl: gh.url, metadataDir: "meta" })]],
            env: { GITHUB_TOKEN: "ghp_" + "WrongWrongWrongWrongWrongWrong0123456" },
        });
        try {
            const r = await other.project.pulumi(["up", "--stack", "local", "--yes"], { reject: false });
            assert.notEqual(r.exitCode, 0);
            assert.match(r.all, /GitHub rejected the token \(401 Bad credentials\): set factory:githubToken/);
            assert.doesNotMatch(r.all, /WrongWrongWrong/);
            const state = await other.project.exportState("local");
            assert.ok(!(state.deployment.resources ?? []).some((x) => x.type === "pulumi-nodejs:dynamic/image-factory:GithubReleaseUpload"));
        } finally {
            await other.close();
        }
    });
});
