// @slow: the outputs contract end to end on the real `local` stack: its `pulumi stack output --json` passes the
// JSON Schema, the Terraform and Ansible examples consume it for real (tofu apply, ansible-playbook fetching the
// qcow2 with its checksum), the policy pack runs in a real `pulumi preview --policy-pack`, and raising
// factory:maxPass adds a pass without touching pass 1.
import { strict as assert } from "node:assert";
import * as crypto from "node:crypto";
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";
import { localStack, type LocalStack } from "../helpers/localStack";
import { parseJsonStream } from "../helpers/project";
import { REPO_ROOT } from "../helpers/setup";
import { checkOutputs } from "../../lib/outputsContract";

interface Outputs {
    schemaVersion: number;
    maxPass: number;
    passes: Record<string, { images: string[] }>;
    images: Record<string, { pass: number; version: string; sha256: string; size: number; qcow2Url: string }>;
}

const IMAGE = "debian-12-minimal";

async function sha256File(file: string): Promise<string> {
    const hash = crypto.createHash("sha256");
    for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
    return hash.digest("hex");
}

/** tofu from .tools/bin, without the machine's CLI config (it may point at a file that does not exist). */
function tofu(args: string[], cwd: string, reject = true) {
    if (!["fmt", "version"].includes(args[0])) args = [args[0], "-no-color", ...args.slice(1)];
    const env = { ...process.env, TF_IN_AUTOMATION: "1", TF_CLI_CONFIG_FILE: "", TF_DATA_DIR: path.join(cwd, ".terraform") };
    return execa("tofu", args, { cwd, env, reject, all: true });
}

describe("outputs contract and its consumers on the real local stack @slow", function () {
    this.timeout(1_800_000);
    let env: LocalStack;
    let outputs: Outputs;
    let consumers: string;

    before(async () => {
        env = await localStack({ config: [["factory:images", JSON.stringify([IMAGE, "debian-12-platform"])], ["factory:maxPass", "1"]] });
        await env.project.upEvents("local");
        outputs = (await env.project.outputs("local")) as unknown as Outputs;
        // The examples as a user has them, with the consumer files written by the real CLI.
        consumers = path.join(env.project.dir, "examples");
        fs.cpSync(path.join(REPO_ROOT, "examples"), consumers, { recursive: true, filter: (s) => !/image_factory\.(auto\.tfvars\.)?json$|\.terraform/.test(s) });
        const outputsFile = path.join(env.project.dir, "outputs.json");
        fs.writeFileSync(outputsFile, JSON.stringify(outputs));
        await execa("node", ["-r", "ts-node/register/transpile-only", path.join(REPO_ROOT, "bin", "consumer-vars.ts"), "--outputs", outputsFile,
            "--terraform", path.join(consumers, "terraform", "outputs"), "--ansible", path.join(consumers, "ansible")], { cwd: REPO_ROOT });
    });
    after(async () => env?.close());

    it("pulumi stack output --json of the local stack validates against schemas/outputs.schema.json", () => {
        const check = checkOutputs(outputs);
        assert.deepEqual(check.problems, []);
        assert.equal(outputs.schemaVersion, 2);
        assert.deepEqual(outputs.passes, { "1": { images: [IMAGE] } });
        assert.deepEqual(Object.keys(outputs.images), [IMAGE], "a pass-2 image appeared with maxPass 1");
        assert.match(outputs.images[IMAGE].sha256, /^[0-9a-f]{64}$/);
    });

    it("bin/consumer-vars refuses outputs that break the contract, naming the field", async () => {
        const bad = path.join(env.project.dir, "bad.json");
        fs.writeFileSync(bad, JSON.stringify({ ...outputs, schemaVersion: 7 }));
        const out = path.join(env.project.dir, "refused");
        const r = await execa("node", ["-r", "ts-node/register/transpile-only", path.join(REPO_ROOT, "bin", "consumer-vars.ts"), "--outputs", bad,
            "--terraform", out, "--ansible", out], { cwd: REPO_ROOT, reject: false });
        assert.equal(r.exitCode, 1);
        assert.match(r.stderr, /consumer-vars: the stack outputs do not match schemas\/outputs.schema.json:\n {2}\/schemaVersion must be equal to constant/);
        assert.equal(fs.existsSync(out), false);
    });

    describe("Terraform (OpenTofu) example", () => {
        let dir: string;
        before(function () {
            if (execa.sync("sh", ["-c", "command -v tofu"], { reject: false }).exitCode !== 0) this.skip(); // built by tools/build.sh; deps.sh names the fix
            dir = path.join(consumers, "terraform", "outputs");
        });

        it("init -backend=false, validate and apply read the outputs: sha256 and URL per image, passes in order", async () => {
            await tofu(["init", "-backend=false", "-input=false"], dir);
            await tofu(["validate"], dir);
            await tofu(["apply", "-auto-approve", "-input=false", `-state=${path.join(dir, "t.tfstate")}`], dir);
            const r = await tofu(["output", "-json", `-state=${path.join(dir, "t.tfstate")}`], dir);
            const tf = JSON.parse(r.stdout) as Record<string, { value: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any -- tofu output values are free-form JSON
            assert.deepEqual(tf.image_sha256.value, { [IMAGE]: outputs.images[IMAGE].sha256 });
            assert.deepEqual(tf.passes.value, [{ pass: 1, images: [IMAGE] }]);
            assert.equal(tf.selected_image.value.name, IMAGE);
            assert.equal(tf.selected_image.value.source.url, outputs.images[IMAGE].qcow2Url);
            assert.equal(tf.selected_image.value.source.checksum, `sha256:${outputs.images[IMAGE].sha256}`);
            assert.equal(tf.selected_image.value.source.template_vmid, null);
        });

        it("a plan for an image the stack does not have fails and lists the ones it has", async () => {
            const r = await tofu(["plan", "-input=false", "-var", "image=debian-13-nope", `-state=${path.join(dir, "t.tfstate")}`], dir, false);
            assert.notEqual(r.exitCode, 0);
            assert.match(r.all ?? "", /image debian-13-nope is not in the stack outputs; it has: debian-12-minimal/);
        });

        it("outputs of another schemaVersion are refused by the variable's validation", async () => {
            const other = path.join(dir, "other.tfvars.json");
            fs.writeFileSync(other, JSON.stringify({ image_factory: { ...outputs, schemaVersion: 1 } }));
            const r = await tofu(["plan", "-input=false", `-var-file=${other}`, `-state=${path.join(dir, "t.tfstate")}`], dir, false);
            assert.notEqual(r.exitCode, 0);
            assert.match((r.all ?? "").replace(/\s+/g, " "), /This module reads outputs schemaVersion 2/);
        });

        it("HashiCorp Terraform, where installed, validates and plans the same module", async function () {
            if (execa.sync("sh", ["-c", "command -v terraform"], { reject: false }).exitCode !== 0) this.skip(); // not packaged for Debian; optional
            const copy = path.join(env.project.dir, "tf-terraform");
            fs.cpSync(dir, copy, { recursive: true, filter: (s) => !/\.terraform|tfstate/.test(s) });
            const tfEnv = { ...process.env, TF_IN_AUTOMATION: "1", TF_CLI_CONFIG_FILE: "" };
            await execa("terraform", ["init", "-no-color", "-backend=false", "-input=false"], { cwd: copy, env: tfEnv });
            await execa("terraform", ["validate", "-no-color"], { cwd: copy, env: tfEnv });
            const plan = await execa("terraform", ["plan", "-no-color", "-input=false"], { cwd: copy, env: tfEnv });
            assert.match(plan.stdout, new RegExp(`${IMAGE}\\s+=\\s+"${outputs.images[IMAGE].sha256}"`));
        });

        it("the Proxmox clone example is well-formed HCL (its provider cannot be downloaded here)", async () => {
            await tofu(["fmt", "-check", "-recursive", "-diff", path.join(consumers, "terraform")], dir);
        });
    });

    describe("Ansible example", () => {
        let dir: string;
        before(() => {
            dir = path.join(consumers, "ansible");
        });

        it("passes ansible-playbook --syntax-check", async () => {
            const r = await execa("ansible-playbook", ["-i", "inventory.yml", "site.yml", "--syntax-check"], { cwd: dir, all: true });
            assert.match(r.stdout, /playbook: site.yml/);
        });

        it("reads the outputs from group vars and downloads each qcow2 verified against its sha256", async () => {
            const downloads = path.join(env.project.dir, "downloads");
            const r = await execa("ansible-playbook", ["-i", "inventory.yml", "site.yml", "-e", `download_dir=${downloads}`], { cwd: dir, all: true, env: { ANSIBLE_NOCOLOR: "1" } });
            assert.match(r.stdout, /"msg": "pass 1: debian-12-minimal"/);
            assert.match(r.stdout, /failed=0/);
            const file = path.join(downloads, `${IMAGE}-${outputs.images[IMAGE].version}.qcow2`);
            assert.equal(fs.statSync(file).size, outputs.images[IMAGE].size);
            assert.equal(await sha256File(file), outputs.images[IMAGE].sha256);
        });

        it("stops with the fix when the outputs are of another schemaVersion", async () => {
            const r = await execa("ansible-playbook", ["-i", "inventory.yml", "site.yml", "-e", JSON.stringify({ image_factory: { ...outputs, schemaVersion: 1 } })],
                { cwd: dir, all: true, reject: false, env: { ANSIBLE_NOCOLOR: "1" } });
            assert.equal(r.exitCode, 2);
            assert.match(r.stdout, /has schemaVersion 1; run `make consumer-vars STACK=<stack>`/);
        });
    });

    describe("policy pack (policy/) in a real pulumi preview", () => {
        it("passes on the local stack as configured", async () => {
            const r = await env.project.pulumi(["preview", "--stack", "local", "--policy-pack", "policy"], { reject: false });
            assert.equal(r.exitCode, 0, r.all);
            assert.match(r.all, /Policies:\s+✅ image-factory@v[\d.]+ \(local: policy\)/);
        });

        it("fails a preview whose config holds a token in plain text, and says how to fix it", async () => {
            // The CLI itself balks at this (`--plaintext` overrides it); a hand-edited stack file does not.
            await env.project.pulumi(["config", "set", "--stack", "local", "--plaintext", "factory:githubToken", "ghp_notARealToken0123456789"]);
            try {
                const r = await env.project.pulumi(["preview", "--stack", "local", "--policy-pack", "policy"], { reject: false });
                assert.notEqual(r.exitCode, 0);
                assert.match(r.all, /no-plaintext-secrets/);
                assert.match(r.all, /factory:githubToken is stored in plain text in the stack config: set it with `pulumi config set --secret factory:githubToken/);
                assert.doesNotMatch(r.all, /ghp_notARealToken/);
            } finally {
                await env.project.pulumi(["config", "rm", "factory:githubToken", "--stack", "local"]);
            }
        });
    });

    describe("reuse across stacks (what dvntm does with dvnt)", () => {
        it("a second stack takes the image from the first one's outputs through a StackReference and builds nothing", async () => {
            const p = env.project;
            await p.initStack("mobile");
            await p.setConfig("mobile", "factory:lab", "local");
            await p.setConfig("mobile", "factory:images", JSON.stringify([IMAGE]));
            await p.setConfig("mobile", "factory:maxPass", "1");
            await p.setConfig("mobile", "factory:reuse", JSON.stringify({ stack: "organization/image-factory/local", images: [IMAGE] }));
            await p.setConfig("mobile", "factory:artifactStore", JSON.stringify({ root: path.join(p.dir, "mobile-artifacts"), port: 1 }));
            await p.setConfig("mobile", "factory:bootstrapUser", JSON.stringify({ name: "ansible", sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMjjA0f48zDtYA4yRMh+7IpcwV32F6VmHb3ZlP0fzwjm test"] }));
            const up = await p.upEvents("mobile");
            assert.equal(up.result, "succeeded");
            const state = await p.exportState("mobile");
            const types = (state.deployment.resources ?? []).map((r) => String(r.type));
            assert.ok(types.includes("pulumi:pulumi:StackReference"), types.join(", "));
            assert.ok(!types.some((t) => /ImageBuild|StoredArtifact|OciPush/.test(t)), `the reusing stack built or stored something: ${types.join(", ")}`);
            const theirs = outputs.images[IMAGE];
            const mine = (await p.outputs("mobile")) as unknown as { images: Record<string, Record<string, unknown>> };
            assert.deepEqual(checkOutputs(mine).problems, []);
            assert.deepEqual(mine.images[IMAGE], {
                pass: 1, reusedFrom: "organization/image-factory/local", version: theirs.version, sha256: theirs.sha256, size: theirs.size,
                qcow2Url: theirs.qcow2Url, proxmox: null, proxmoxTemplates: null,
            });
        });
    });

    describe("bootstrap passes", () => {
        it("raising factory:maxPass to 2 plans pass 2 and leaves every pass-1 resource unchanged", async () => {
            await env.project.setConfig("local", "factory:maxPass", "2");
            const r = await env.project.pulumi(["preview", "--stack", "local", "--json", "--show-sames"]);
            await env.project.setConfig("local", "factory:maxPass", "1");
            const doc = parseJsonStream(r.stdout)[0] as { steps?: Array<{ op: string; urn: string }> };
            const steps = doc.steps ?? [];
            const name = (urn: string) => urn.slice(urn.lastIndexOf("::") + 2);
            const pass1 = steps.filter((s) => name(s.urn) === "pass-1" || name(s.urn).startsWith(`${IMAGE}`));
            assert.ok(pass1.length >= 4, `expected pass-1 steps, got ${steps.map((s) => `${s.op} ${s.urn}`).join("\n")}`);
            assert.deepEqual(pass1.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn}`), []);
            const created = steps.filter((s) => s.op === "create").map((s) => name(s.urn));
            assert.ok(created.includes("pass-2"), created.join(", "));
            assert.ok(created.includes("debian-12-platform-build"), created.join(", "));
            assert.ok(!created.some((n) => n.startsWith(IMAGE)), created.join(", "));
        });
    });
});
