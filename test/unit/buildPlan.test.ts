// Content addressing: which inputs change a build key, and which do not.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { uuidFromKey } from "../../lib/stages/buildKey";
import { canonicalJson } from "../../lib/sha256";
import { planBuild, planPackerProxmox, snapshotEpoch, type PlanArgs } from "../../lib/stages/plan";
import { loadRecipe, recipeFiles, rolesUsed } from "../../lib/recipe";
import { REPO_ROOT } from "../helpers/setup";
import { requestFor } from "../helpers/requests";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";

describe("build plans and keys", () => {
    let project: string;
    const args = (name: string, over: Partial<PlanArgs> = {}): PlanArgs => ({
        recipe: loadRecipe(name, path.join(project, "images")),
        projectDir: project,
        workDir: "/nonexistent/work",
        bootstrapUser: { name: "ansible", authorizedKeys: [KEY] },
        domain: "lab.example",
        debian: { suite: "bookworm", mirror: "http://mirror.example/debian", securityMirror: "http://mirror.example/debian-security" },
        ...over,
    });

    before(() => {
        // Two images in a scratch copy of images/ and ansible/: changing one must not move the other's key.
        project = fs.mkdtempSync(path.join(os.tmpdir(), "if-plan-"));
        fs.cpSync(path.join(REPO_ROOT, "images"), path.join(project, "images"), { recursive: true });
        fs.cpSync(path.join(REPO_ROOT, "ansible"), path.join(project, "ansible"), { recursive: true });
        const second = path.join(project, "images", "second");
        fs.cpSync(path.join(project, "images", "debian-12-minimal"), second, { recursive: true });
        fs.writeFileSync(path.join(second, "image.ts"), fs.readFileSync(path.join(second, "image.ts"), "utf8").replace('name: "debian-12-minimal"', 'name: "second"'));
    });
    after(() => fs.rmSync(project, { recursive: true, force: true }));

    it("the builder node's key follows the tools it carries (by tools/build.sh stamp); other images' keys do not", () => {
        const tools = path.join(project, ".tools");
        fs.mkdirSync(path.join(tools, "bin"), { recursive: true });
        fs.mkdirSync(path.join(tools, "stamps"), { recursive: true });
        for (const t of ["pulumi", "pulumi-language-nodejs", "pulumi-resource-pulumi-nodejs", "oras", "packer", "actionlint"]) {
            fs.writeFileSync(path.join(tools, "bin", t), `#!/bin/sh\n# ${t}\n`);
            if (t !== "pulumi-resource-pulumi-nodejs") fs.writeFileSync(path.join(tools, "stamps", t), `stamp-of-${t}\n`);
        }
        // the forge kit's plugins, identified by their stamps only (the kit is packed from .tools at build time)
        for (const p of ["packer-plugin-qemu", "packer-plugin-ansible", "packer-plugin-proxmox", "pulumi-resource-proxmoxve"]) fs.writeFileSync(path.join(tools, "stamps", p), `stamp-of-${p}\n`);
        const base = { id: "image:debian-12-minimal", version: "this-stack", identity: "b".repeat(64) };
        const node = () => planBuild(args("builder-node", { base })).buildKey;
        const minimal = planBuild(args("debian-12-minimal")).buildKey;
        const before = node();
        fs.writeFileSync(path.join(tools, "stamps", "pulumi"), "stamp-of-a-newer-pulumi\n");
        assert.notEqual(node(), before, "a new Pulumi must rebuild the builder node");
        fs.appendFileSync(path.join(tools, "bin", "pulumi-resource-pulumi-nodejs"), "# changed shim\n");
        const afterShim = node();
        assert.notEqual(afterShim, before);
        fs.writeFileSync(path.join(tools, "stamps", "pulumi-resource-proxmoxve"), "stamp-of-a-newer-plugin\n");
        assert.notEqual(node(), afterShim, "a new Proxmox VE plugin in the forge kit must rebuild the builder node");
        assert.equal(planBuild(args("debian-12-minimal")).buildKey, minimal, "other images are not affected");
        fs.rmSync(path.join(tools, "stamps", "packer-plugin-qemu"));
        assert.throws(() => node(), /images\/builder-node carries the packer-plugin-qemu plugin, whose build stamp \.tools\/stamps\/packer-plugin-qemu is missing: run bash scripts\/setup\.sh/);
        fs.writeFileSync(path.join(tools, "stamps", "packer-plugin-qemu"), "stamp-of-packer-plugin-qemu\n");
        fs.rmSync(path.join(tools, "bin", "oras"));
        assert.throws(() => node(), /images\/builder-node carries \.tools\/bin\/oras, which is missing: run bash scripts\/setup\.sh/);
        fs.rmSync(tools, { recursive: true, force: true });
    });

    it("a malformed recipe or playbook fails naming the file and the field (or line)", () => {
        const bad = path.join(project, "images", "broken");
        fs.cpSync(path.join(project, "images", "debian-12-minimal"), bad, { recursive: true });
        const recipe = fs.readFileSync(path.join(bad, "image.ts"), "utf8").replace('name: "debian-12-minimal"', 'name: "broken"');
        fs.writeFileSync(path.join(bad, "image.ts"), recipe.replace(/pass: \d/, "pass: 7"));
        assert.throws(() => loadRecipe("broken", path.join(project, "images")), /^UserError: images\/broken\/image\.ts is not a valid recipe: pass: /);
        fs.writeFileSync(path.join(bad, "image.ts"), recipe);
        delete require.cache[path.join(bad, "image.ts")]; // recipes are required: drop the broken one
        fs.writeFileSync(path.join(bad, "playbook.yml"), "- hosts: all\n  tasks:\n    - name: x\n     bad: [indent\n");
        assert.throws(() => planBuild(args("broken")), /^Error: images\/broken\/playbook\.yml is not valid YAML \(line \d+, column \d+\): /);
        fs.rmSync(bad, { recursive: true, force: true });
    });

    it("is deterministic and known without building", () => {
        const a = planBuild(args("debian-12-minimal"));
        const b = planBuild(args("debian-12-minimal"));
        assert.match(a.buildKey, /^[0-9a-f]{64}$/);
        assert.equal(a.buildKey, b.buildKey);
        assert.equal(requestFor(a.request, "rootfs").rootfs.user.authorizedKeys[0], KEY);
        assert.equal(a.request.buildsDir, "/nonexistent/work/builds");
    });

    it("changing one recipe file changes that image's key only", () => {
        const before = [planBuild(args("debian-12-minimal")).buildKey, planBuild(args("second")).buildKey];
        fs.appendFileSync(path.join(project, "images", "second", "playbook.yml"), "# changed\n");
        const after = [planBuild(args("debian-12-minimal")).buildKey, planBuild(args("second")).buildKey];
        assert.equal(after[0], before[0]);
        assert.notEqual(after[1], before[1]);
    });

    it("a shared role, the bootstrap key, the mirror or a pinned version change every affected key", () => {
        const base = planBuild(args("debian-12-minimal")).buildKey;
        assert.notEqual(planBuild(args("debian-12-minimal", { bootstrapUser: { name: "ansible", authorizedKeys: [`${KEY}2`] } })).buildKey, base);
        assert.notEqual(planBuild(args("debian-12-minimal", { debian: { suite: "bookworm", mirror: "http://other.example/debian", securityMirror: "http://mirror.example/debian-security" } })).buildKey, base);
        assert.notEqual(planBuild(args("debian-12-minimal", { versionOverride: "v2026.01.01" })).buildKey, base);
        fs.appendFileSync(path.join(project, "ansible", "roles", "image_base", "tasks", "main.yml"), "\n# shared change\n");
        assert.notEqual(planBuild(args("debian-12-minimal")).buildKey, base);
    });

    it("only the roles an image's playbooks use are in its key: the builder node's role does not move the others", () => {
        const files = (name: string) => recipeFiles(name, path.join(project, "images")).map((f) => path.relative(project, f));
        assert.deepEqual(files("debian-12-minimal").filter((f) => f.startsWith("ansible/")), ["ansible/requirements.yml", "ansible/roles/image_base/tasks/main.yml",
            ...files("debian-12-minimal").filter((f) => f.startsWith("ansible/roles/image_base/templates/"))]);
        assert.ok(files("builder-node").includes("ansible/roles/builder_node/files/forge-install.sh"));
        assert.ok(files("builder-node").includes("ansible/roles/image_base/tasks/main.yml"));
        assert.ok(!files("sdr-pi").some((f) => f.includes("image_base") || f.includes("builder_node")));
        const minimal = planBuild(args("debian-12-minimal")).buildKey;
        const pi = planBuild(args("sdr-pi", { base: { id: "catalog:raspios", version: "x", identity: "c".repeat(64) } })).buildKey;
        fs.appendFileSync(path.join(project, "ansible", "roles", "builder_node", "tasks", "main.yml"), "\n# the node's own change\n");
        assert.equal(planBuild(args("debian-12-minimal")).buildKey, minimal);
        assert.equal(planBuild(args("sdr-pi", { base: { id: "catalog:raspios", version: "x", identity: "c".repeat(64) } })).buildKey, pi);
    });

    it("follows roles through include_role in blocks and meta dependencies, and takes every role when a name is only known at run time", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-roles-"));
        const write = (f: string, text: string) => {
            fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
            fs.writeFileSync(path.join(dir, f), text);
        };
        try {
            write("roles/a/tasks/main.yml", "- block:\n    - ansible.builtin.include_role:\n        name: b\n");
            write("roles/b/meta/main.yml", "dependencies:\n  - role: c\n");
            write("roles/c/tasks/main.yml", "- ansible.builtin.debug: {msg: c}\n");
            write("roles/d/tasks/main.yml", "- ansible.builtin.debug: {msg: unused}\n");
            write("images/x/playbook.yml", "- hosts: all\n  roles:\n    - a\n    - some.collection.role\n");
            assert.deepEqual(rolesUsed(path.join(dir, "images", "x"), path.join(dir, "roles")), ["a", "b", "c"]);
            write("images/x/playbook.yml", "- hosts: all\n  tasks:\n    - import_role:\n        name: \"{{ which }}\"\n");
            assert.deepEqual(rolesUsed(path.join(dir, "images", "x"), path.join(dir, "roles")), ["a", "b", "c", "d"]);
            write("images/x/playbook.yml", "- hosts: all\n  roles:\n    - not_ours\n");
            assert.deepEqual(rolesUsed(path.join(dir, "images", "x"), path.join(dir, "roles")), ["a", "b", "c", "d"], "a role Ansible finds elsewhere");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    it("plans a Packer → Proxmox template's key like the others: from the clone, its base's digest, the VM id and the node", () => {
        const args = { recipe: loadRecipe("debian-12-minimal-pve"), projectDir: REPO_ROOT, node: "pve1", user: "ansible", clone: "debian-12-minimal-v2026.01.01", baseSha256: "a".repeat(64), vmid: 9001 };
        const key = planPackerProxmox(args);
        assert.match(key, /^[0-9a-f]{64}$/);
        assert.equal(planPackerProxmox({ ...args }), key);
        for (const change of [{ clone: "debian-12-minimal-v2026.02.01" }, { baseSha256: "b".repeat(64) }, { vmid: 9002 }, { node: "pve2" }, { user: "ops" }]) {
            assert.notEqual(planPackerProxmox({ ...args, ...change }), key, JSON.stringify(change));
        }
    });

    it("derives SOURCE_DATE_EPOCH from a pinned snapshot, else from the recipe", () => {
        assert.equal(snapshotEpoch("20250520T000000Z"), 1747699200);
        const pinned = planBuild(args("debian-12-minimal", { debian: { suite: "bookworm", mirror: "http://mirror.example/debian", securityMirror: "http://mirror.example/debian-security", snapshot: "20250520T000000Z", snapshotBase: "http://snapshots.example" } }));
        assert.equal(requestFor(pinned.request, "rootfs").rootfs.sourceDateEpoch, 1747699200);
        assert.equal(requestFor(planBuild(args("debian-12-minimal")).request, "rootfs").rootfs.sourceDateEpoch, 1735689600);
    });

    it("canonical JSON ignores key order; derived UUIDs are stable and well-formed", () => {
        assert.equal(canonicalJson({ b: 1, a: { d: [2, { y: 1, x: 2 }], c: 3 } }), '{"a":{"c":3,"d":[2,{"x":2,"y":1}]},"b":1}');
        const u = uuidFromKey("k", "rootfs");
        assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        assert.equal(u, uuidFromKey("k", "rootfs"));
        assert.notEqual(u, uuidFromKey("k2", "rootfs"));
    });

    it("rejects an unknown image with the list of known ones", () => {
        const known = fs.readdirSync(path.join(project, "images")).filter((n) => fs.existsSync(path.join(project, "images", n, "image.ts"))).sort();
        assert.ok(known.includes("second") && known.includes("sdr-pi"));
        assert.throws(() => loadRecipe("nope", path.join(project, "images")), new RegExp(`unknown image "nope".*known images: ${known.join(", ")}$`));
    });
});
