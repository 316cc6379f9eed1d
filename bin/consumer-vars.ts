// Writes a stack's outputs for the consumers in examples/: Terraform tfvars JSON and Ansible group vars.
//   make consumer-vars STACK=dvnt
//   node -r ts-node/register/transpile-only bin/consumer-vars.ts --stack dvnt [--outputs file.json]
//        [--terraform examples/terraform/outputs] [--ansible examples/ansible]
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";
import { consumerPaths, writeConsumerFiles } from "../lib/outputsContract";
import { parseCli } from "../lib/cli";

const root = path.join(__dirname, "..");
type Option = "stack" | "outputs" | "terraform" | "ansible";
let cli: ReturnType<typeof parseCli<Option>> | undefined;
const argValue = (name: Option): string | undefined => {
    cli ??= parseCli<Option>({ values: ["stack", "outputs", "terraform", "ansible"],
        usage: "consumer-vars.ts [--stack local | --outputs file.json] [--terraform <dir>] [--ansible <dir>]" });
    return cli.value(name);
};
async function readOutputs(): Promise<unknown> {
    const file = argValue("outputs");
    if (file) return JSON.parse(fs.readFileSync(file, "utf8"));
    const stack = argValue("stack") ?? "local";
    // Secrets stay masked: nothing in the contract is secret, and a consumer file must never hold one.
    const r = await execa("pulumi", ["stack", "output", "--json", "--stack", stack], { cwd: root, reject: false });
    if (r.exitCode !== 0) throw new Error(`pulumi stack output --stack ${stack} failed: ${r.stderr.trim() || r.stdout.trim()}\n` +
        "(is the stack initialised and deployed? `make up STACK=...` first; for dvnt/dvntm log in to their backend)");
    return JSON.parse(r.stdout);
}

async function main(): Promise<void> {
    const files = consumerPaths(
        path.resolve(argValue("terraform") ?? path.join(root, "examples", "terraform", "outputs")),
        path.resolve(argValue("ansible") ?? path.join(root, "examples", "ansible")),
    );
    await writeConsumerFiles(await readOutputs(), files);
    console.log(`terraform: ${files.terraform}\nansible:   ${files.ansible}`);
}

main().catch((err: Error) => {
    console.error(`consumer-vars: ${err.message}`);
    process.exit(1);
});
