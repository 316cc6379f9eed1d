// FR-6: collections from a requirements file go into a project-local path, a second run installs nothing,
// playbooks use them, and a source this machine cannot reach fails with the offline recipe.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/setup";

describe("Ansible collections (FR-6)", function () {
    this.timeout(120_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-collections-"));
    const script = path.join(REPO_ROOT, "scripts", "ansible-collections.sh");
    const dest = path.join(dir, "collections");
    const tarballs = path.join(dir, "tarballs");
    const req = path.join(dir, "requirements.yml");
    before(async () => {
        fs.mkdirSync(tarballs);
        await execa("ansible-galaxy", ["collection", "build", "--output-path", tarballs, path.join(REPO_ROOT, "test/fixtures/collections/imagefactory/testkit")]);
        fs.writeFileSync(req, "collections:\n  - name: imagefactory.testkit\n    version: \">=1.0.0\"\n  - name: community.general\n    version: \">=6.0.0\"\n");
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("the project's requirements name deevnet.builder at a pinned commit, and the shipped collections", () => {
        const text = fs.readFileSync(path.join(REPO_ROOT, "ansible/requirements.yml"), "utf8");
        assert.match(text, /- name: deevnet\.builder\n\s+type: git\n\s+source: \S+ansible-collection-deevnet\.builder\.git\n(\s+#.*\n)?\s+version: [0-9a-f]{40}\n/);
        assert.match(text, /- name: community\.general/);
    });

    it("installs into the given project-local path from a tarball directory, then converges", async () => {
        const first = await execa("bash", [script, req, dest], { env: { IMAGE_FACTORY_COLLECTIONS_DIR: tarballs }, all: true });
        assert.match(first.all ?? "", /community\.general ok \(\S+ in \/usr\/lib\/python3\/dist-packages\/ansible_collections\)/);
        assert.ok(fs.existsSync(path.join(dest, "ansible_collections/imagefactory/testkit/MANIFEST.json")));
        const second = await execa("bash", [script, req, dest], { all: true });
        assert.match(second.all ?? "", /imagefactory\.testkit ok \(1\.0\.0 in \S+\)/);
        assert.match(second.all ?? "", /nothing to install/);
    });

    it("a playbook finds the installed collection through ANSIBLE_COLLECTIONS_PATH", async () => {
        const pb = path.join(dir, "pb.yml");
        const marker = path.join(dir, "marker.txt");
        fs.writeFileSync(pb, `- hosts: localhost\n  connection: local\n  gather_facts: false\n  roles:\n    - role: imagefactory.testkit.marker\n      vars:\n        marker_path: ${marker}\n`);
        await execa("ansible-playbook", ["-i", "localhost,", pb], { env: { ANSIBLE_COLLECTIONS_PATH: dest } });
        assert.equal(fs.readFileSync(marker, "utf8"), "testkit\n");
    });

    it("without a reachable source or tarball it fails naming the offline way", async () => {
        const lonely = path.join(dir, "lonely.yml");
        fs.writeFileSync(lonely, "collections:\n  - name: imagefactory.absent\n    version: \">=1.0.0\"\n");
        const r = await execa("bash", [script, lonely, path.join(dir, "other")], { env: { IMAGE_FACTORY_COLLECTIONS_DIR: tarballs }, reject: false, all: true });
        assert.notEqual(r.exitCode, 0);
        assert.match(r.all ?? "", /no imagefactory-absent-<version>\.tar\.gz in /);
    });
});
