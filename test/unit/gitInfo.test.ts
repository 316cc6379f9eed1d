// Provenance's git facts (lib/git.ts): a tree is dirty when an input changed; the release records the factory writes
// into the checkout after publishing (releases/, manifests/, docs/releases.md) are not inputs.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { gitInfo } from "../../lib/git";

describe("lib/git: commit and dirtiness", () => {
    it("release metadata changes leave the tree clean; any other tracked change makes it dirty", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-git-"));
        try {
            const git = (...args: string[]) => execa("git", args, { cwd: dir, env: { GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t" } });
            await git("init", "-q");
            for (const f of ["index.ts", "releases/v2026.12.06.json", "manifests/tools.json", "docs/releases.md", "docs/other.md"]) {
                fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
                fs.writeFileSync(path.join(dir, f), "1\n");
            }
            await git("add", "-A");
            await git("commit", "-q", "-m", "c");
            assert.equal(gitInfo(dir).dirty, false);
            for (const f of ["releases/v2026.12.06.json", "manifests/tools.json", "docs/releases.md"]) fs.writeFileSync(path.join(dir, f), "2\n");
            await git("add", "releases");
            assert.equal(gitInfo(dir).dirty, false, "staged or not, release records are not inputs");
            fs.writeFileSync(path.join(dir, "docs/other.md"), "2\n");
            assert.equal(gitInfo(dir).dirty, true, "another file under docs/ is");
            await git("checkout", "--", "docs/other.md");
            fs.writeFileSync(path.join(dir, "index.ts"), "2\n");
            assert.equal(gitInfo(dir).dirty, true);
            assert.match(gitInfo(dir).commit, /^[0-9a-f]{40}$/);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
