// One GitHub release per version tag: every image's GithubReleaseUpload puts its files into the tag's one draft
// (concurrent writers settle on the oldest draft), nothing is published until the stack's GithubReleasePublication
// has checked all of them, the notes list every image, and a re-run with one changed image replaces only its files.
// The providers are called as the engine calls them, against the loopback GitHub fake (which, like GitHub, accepts
// several drafts per tag).
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { provider as uploadProvider, type GithubReleaseInputs, type GithubReleaseOutputs } from "../../providers/githubRelease";
import { parseNotes, provider as publicationProvider, renderNotes, type GithubReleasePublicationOutputs, type ReleaseEntry } from "../../providers/githubReleasePublication";
import { startFakeGithub, type FakeGithub } from "../helpers/fakeGithub";

const TAG = "v2026.05.05";
const token = "ghp_publicationTest";

describe("one GitHub release per version tag (GithubReleaseUpload + GithubReleasePublication)", function () {
    this.timeout(60_000);
    let gh: FakeGithub;
    let dir: string;
    const files: Record<string, { file: string; sha256: string; size: number }> = {};
    const uploads: Record<string, GithubReleaseOutputs> = {};
    let published: GithubReleasePublicationOutputs;

    const write = (image: string, bytes: Buffer) => {
        const file = path.join(dir, `${image}-${TAG}.qcow2`);
        fs.writeFileSync(file, bytes);
        files[image] = { file, sha256: crypto.createHash("sha256").update(bytes).digest("hex"), size: bytes.length };
    };
    const uploadInputs = (image: string): GithubReleaseInputs => ({
        apiUrl: gh.url, owner: "deevnet", repo: "images", token, tag: TAG, releaseName: TAG, body: `${image} uploading`,
        file: files[image].file, fileName: `${image}-${TAG}.qcow2`, sha256: files[image].sha256, size: files[image].size, deleteOnDestroy: false,
    });
    const entry = (image: string): ReleaseEntry => ({
        image, tag: TAG, releaseId: uploads[image].releaseId, fileName: uploads[image].fileName, sha256: uploads[image].sha256, size: uploads[image].size,
        sumName: uploads[image].sha256AssetName, sumSha256: uploads[image].sha256AssetSha256, notes: `## ${image} ${TAG}\n\nsha256 ${uploads[image].sha256}`,
    });
    const publicationInputs = (images: string[]) => ({ apiUrl: gh.url, owner: "deevnet", repo: "images", token, entries: images.map(entry) });
    const ofTag = () => gh.releases("deevnet", "images").filter((r) => r.tag_name === TAG);

    before(async () => {
        process.env.IMAGE_FACTORY_GITHUB_RETRY_MS = "5";
        gh = await startFakeGithub({ token, repos: [["deevnet", "images"]] });
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-ghpub-"));
        for (const image of ["debian-12-minimal", "nocloud-seed-iso", "debian-12-platform"]) write(image, crypto.randomBytes(200_000));
    });
    after(async () => {
        await gh.close();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    it("three images uploading at once share one draft, and none of them publishes it", async () => {
        const results = await Promise.all(Object.keys(files).map((image) => uploadProvider.create!(uploadInputs(image))));
        for (const r of results) uploads[(r.outs as GithubReleaseOutputs).fileName.replace(`-${TAG}.qcow2`, "")] = r.outs as GithubReleaseOutputs;
        const releases = ofTag();
        assert.equal(releases.length, 1, `drafts for ${TAG}: ${releases.map((r) => `${r.id} (${r.assets.length} assets)`).join(", ")}`);
        assert.equal(releases[0].draft, true, "an image must not publish the release the others are uploading into");
        assert.deepEqual(releases[0].assets.map((a) => a.name).sort(), Object.keys(files).flatMap((i) => [`${i}-${TAG}.qcow2`, `${i}-${TAG}.qcow2.sha256`]).sort());
        assert.deepEqual(new Set(Object.values(uploads).map((u) => u.releaseId)), new Set([releases[0].id]));
        assert.ok(!gh.requests.some((r) => r.method === "PATCH"), "no publish from an upload");
    });

    it("the publication checks every file, publishes once with notes listing every image, and gives the tag's URLs", async () => {
        const before = gh.requests.length;
        const r = await publicationProvider.create!(publicationInputs(Object.keys(files)));
        published = r.outs as GithubReleasePublicationOutputs;
        const [release] = ofTag();
        assert.equal(release.draft, false);
        assert.equal(gh.requests.slice(before).filter((x) => x.method === "PATCH").length, 1, "published exactly once");
        assert.deepEqual([...parseNotes(release.body).keys()].sort(), Object.keys(files).sort());
        assert.match(release.body, /Images in this release: debian-12-minimal, debian-12-platform, nocloud-seed-iso\./);
        for (const image of Object.keys(files)) {
            const urls = published.images[image];
            assert.equal(urls.assetUrl, `${gh.url}/deevnet/images/releases/download/${TAG}/${image}-${TAG}.qcow2`, "a draft's untagged-… URL must not leak out");
            const res = await fetch(urls.assetUrl);
            assert.equal(crypto.createHash("sha256").update(Buffer.from(await res.arrayBuffer())).digest("hex"), files[image].sha256);
            assert.equal(await (await fetch(urls.sha256AssetUrl)).text(), `${files[image].sha256}  ${image}-${TAG}.qcow2\n`);
        }
        assert.deepEqual(published.tags[TAG].images, Object.keys(files).sort());
    });

    it("a re-run with one changed image replaces only its files (new file up before the old goes) and only its notes", async () => {
        const old = ofTag()[0].assets.map((a) => ({ name: a.name, id: a.id }));
        write("debian-12-platform", crypto.randomBytes(150_000));
        const before = gh.requests.length;
        const diff = await uploadProvider.diff!(`x`, uploads["debian-12-platform"], uploadInputs("debian-12-platform"));
        assert.deepEqual(diff.replaces, ["sha256"]);
        uploads["debian-12-platform"] = (await uploadProvider.create!(uploadInputs("debian-12-platform"))).outs as GithubReleaseOutputs;
        const news = publicationInputs(Object.keys(files));
        assert.equal((await publicationProvider.diff!("x", published, news)).changes, true);
        published = (await publicationProvider.update!("x", published, news)).outs as GithubReleasePublicationOutputs;

        const writes = gh.requests.slice(before).filter((r) => r.method !== "GET").map((r) => `${r.method} ${r.path.replace(/\d+/g, "N")}${r.path.startsWith("/uploads") ? "" : ""}`);
        const touched = gh.requests.slice(before).filter((r) => r.method === "DELETE").map((r) => Number(/(\d+)$/.exec(r.path)?.[1]));
        assert.deepEqual(old.filter((a) => touched.includes(a.id)).map((a) => a.name).sort(), [`debian-12-platform-${TAG}.qcow2`, `debian-12-platform-${TAG}.qcow2.sha256`]);
        const firstUpload = writes.findIndex((w) => w.startsWith("POST /uploads"));
        const firstDelete = writes.findIndex((w) => w.startsWith("DELETE"));
        assert.ok(firstUpload >= 0 && firstUpload < firstDelete, `the new file goes up before the old one is deleted:\n${writes.join("\n")}`);
        const [release] = ofTag();
        assert.deepEqual(release.assets.map((a) => a.name).sort(), Object.keys(files).flatMap((i) => [`${i}-${TAG}.qcow2`, `${i}-${TAG}.qcow2.sha256`]).sort(), "no .partial left");
        assert.deepEqual(gh.assetBytes("deevnet", "images", TAG, `debian-12-platform-${TAG}.qcow2`), fs.readFileSync(files["debian-12-platform"].file));
        const notes = parseNotes(release.body);
        assert.match(notes.get("debian-12-platform") ?? "", new RegExp(files["debian-12-platform"].sha256));
        assert.match(notes.get("debian-12-minimal") ?? "", new RegExp(files["debian-12-minimal"].sha256));
        assert.equal(published.images["debian-12-platform"].assetUrl, `${gh.url}/deevnet/images/releases/download/${TAG}/debian-12-platform-${TAG}.qcow2`);
    });

    it("a preview with an image still to be rebuilt (its entry unknown) is a change, not a crash", async () => {
        const unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"; // the engine's unknown sentinel in dynamic-provider inputs
        const news = publicationInputs(Object.keys(files));
        const withUnknown = { ...news, entries: [news.entries[0], unknown as unknown as ReleaseEntry] };
        assert.equal((await publicationProvider.diff!("x", published, withUnknown)).changes, true);
        assert.equal((await publicationProvider.diff!("x", published, { ...news, entries: unknown as unknown as ReleaseEntry[] })).changes, true);
    });

    it("an unchanged re-run is no change for the publication", async () => {
        assert.equal((await publicationProvider.diff!("x", published, publicationInputs(Object.keys(files)))).changes, false);
    });

    it("a later run that publishes only some images of a tag keeps the others' sections in the notes", async () => {
        const news = publicationInputs(["debian-12-minimal"]);
        news.entries[0].notes += "\n\nrebuilt notes";
        published = (await publicationProvider.update!("x", published, news)).outs as GithubReleasePublicationOutputs;
        const notes = parseNotes(ofTag()[0].body);
        assert.deepEqual([...notes.keys()].sort(), Object.keys(files).sort());
        assert.match(notes.get("debian-12-minimal") ?? "", /rebuilt notes/);
    });

    it("an orphan empty draft of the tag is removed; the publication refuses while a file is missing, naming it", async () => {
        const tag2 = "v2026.05.06";
        write("debian-12-minimal", crypto.randomBytes(1000));
        const inputs = { ...uploadInputs("debian-12-minimal"), tag: tag2, fileName: `debian-12-minimal-${tag2}.qcow2` };
        const up = (await uploadProvider.create!(inputs)).outs as GithubReleaseOutputs;
        // An interrupted run's duplicate: a newer, empty draft with the same tag.
        await fetch(`${gh.url}/repos/deevnet/images/releases`, { method: "POST", headers: { authorization: `token ${token}` }, body: JSON.stringify({ tag_name: tag2, draft: true }) });
        assert.equal(gh.releases("deevnet", "images").filter((r) => r.tag_name === tag2).length, 2);
        const e: ReleaseEntry = { image: "debian-12-minimal", tag: tag2, releaseId: up.releaseId, fileName: up.fileName, sha256: up.sha256, size: up.size,
            sumName: up.sha256AssetName, sumSha256: up.sha256AssetSha256, notes: "n" };
        const missing = { ...e, image: "debian-12-platform", fileName: `debian-12-platform-${tag2}.qcow2`, sumName: `debian-12-platform-${tag2}.qcow2.sha256` };
        await assert.rejects(publicationProvider.create!({ apiUrl: gh.url, owner: "deevnet", repo: "images", token, entries: [e, missing] }),
            new RegExp(`release ${tag2}: not published, because debian-12-platform-${tag2}\\.qcow2, debian-12-platform-${tag2}\\.qcow2\\.sha256 are missing or hold other bytes: run pulumi refresh, then pulumi up`));
        assert.ok(gh.releases("deevnet", "images").filter((r) => r.tag_name === tag2).every((r) => r.draft), "nothing published while a file is missing");
        await publicationProvider.create!({ apiUrl: gh.url, owner: "deevnet", repo: "images", token, entries: [e] });
        const left = gh.releases("deevnet", "images").filter((r) => r.tag_name === tag2);
        assert.deepEqual(left.map((r) => [r.id, r.draft]), [[up.releaseId, false]], "the orphan draft is gone, the release is published");
    });

    it("a draft whose tag another writer published meanwhile is refused as GitHub refuses it (422 already_exists), and the error names both releases and the way back", async () => {
        const tag3 = "v2026.05.07";
        write("debian-12-minimal", crypto.randomBytes(1000));
        const up = (await uploadProvider.create!({ ...uploadInputs("debian-12-minimal"), tag: tag3, fileName: `debian-12-minimal-${tag3}.qcow2` })).outs as GithubReleaseOutputs;
        // Another writer (a second lab run, a person on github.com) publishes a release of the same tag.
        const other = await fetch(`${gh.url}/repos/deevnet/images/releases`, { method: "POST", headers: { authorization: `token ${token}` }, body: JSON.stringify({ tag_name: tag3, draft: false }) });
        assert.equal(other.status, 201);
        const otherId = (await other.json() as { id: number }).id;
        // The fake answers publishing the draft as GitHub does ("Update a release" → 422 already_exists on tag_name).
        const raw = await fetch(`${gh.url}/repos/deevnet/images/releases/${up.releaseId}`, { method: "PATCH", headers: { authorization: `token ${token}` }, body: JSON.stringify({ draft: false }) });
        assert.equal(raw.status, 422);
        assert.deepEqual((await raw.json() as { errors: unknown[] }).errors, [{ resource: "Release", code: "already_exists", field: "tag_name" }]);
        const e: ReleaseEntry = { image: "debian-12-minimal", tag: tag3, releaseId: up.releaseId, fileName: up.fileName, sha256: up.sha256, size: up.size,
            sumName: up.sha256AssetName, sumSha256: up.sha256AssetSha256, notes: "n" };
        await assert.rejects(publicationProvider.create!({ apiUrl: gh.url, owner: "deevnet", repo: "images", token, entries: [e] }),
            new RegExp(`release ${tag3}: the draft ${up.releaseId} that holds this run's assets cannot be published: release ${otherId} \\(.*\\) already holds the tag ` +
                `\\(GitHub: 422 already_exists on tag_name\\)\\. Delete draft ${up.releaseId} on GitHub, then run pulumi refresh and pulumi up`));
        assert.equal(gh.releases("deevnet", "images").find((r) => r.id === up.releaseId)?.draft, true, "the draft stays a draft");
    });

    it("renderNotes and parseNotes round-trip every image's section", () => {
        const sections = new Map([["b", "## b\n\ntext | with | pipes"], ["a", "## a"]]);
        assert.deepEqual([...parseNotes(renderNotes("v1", sections))].sort(), [...sections].sort());
    });
});
