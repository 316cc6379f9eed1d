// `make lab.check STACK=dvnt`: every problem a lab run would meet after an hour of builds, at once, in seconds
// (lib/labCheck.ts). scripts/ci/up.sh runs it first with the run's copy of the stack file.
//   lab-check.ts --stack dvnt [--config-file <copy of Pulumi.dvnt.yaml>]
import * as fs from "node:fs";
import * as path from "node:path";
import { parseCli } from "../lib/cli";
import { checkBackend, checkRunner, checkSecrets, checkStoreUrl, configFinding, formatFindings, secureKeysOf, type Finding } from "../lib/labCheck";
import { stackConfig } from "../lib/stackFile";

const root = path.resolve(__dirname, "..");

async function main(): Promise<number> {
    const cli = parseCli<"stack" | "config-file">({ values: ["stack", "config-file"], usage: "lab-check.ts --stack <dvnt|dvntm> [--config-file <file>]" });
    const stack = cli.value("stack") ?? "dvnt";
    const file = path.resolve(cli.value("config-file") ?? path.join(root, `Pulumi.${stack}.yaml`));
    const findings: Finding[] = [];
    const { config, findings: cfg } = configFinding(() => stackConfig(stack, root, file, { placeholderKeys: "allow" }));
    findings.push(...cfg);
    const [backend, runner] = await Promise.all([checkBackend(stack, root, process.env), checkRunner(root, process.env)]);
    if (config) {
        findings.push(...checkSecrets(config, process.env, secureKeysOf(fs.readFileSync(file, "utf8"))));
        findings.push(await checkStoreUrl(config, (p) => path.resolve(root, p)));
    } else {
        findings.push({ status: "note", what: "targets", detail: "not checked: the stack config has problems (above)" });
    }
    findings.push(backend, ...runner);
    console.log(formatFindings(stack, findings));
    return findings.some((f) => f.status === "fail") ? 1 : 0;
}

main().then((code) => process.exit(code), (err: Error) => {
    console.error(`lab-check: ${err.message}`);
    process.exit(2);
});
