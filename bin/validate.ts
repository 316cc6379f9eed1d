// Offline validation of any qcow2, outside Pulumi (the runbook's `make validate`):
//   make validate QCOW2=/abs/path.qcow2 IMAGE=<name> VERSION=<version> [BOOTSTRAP_USER=ansible]
// Prints the report, writes an evidence packet (.../<UTC>/validate/, signed with EVIDENCE_SIGN=1
// EVIDENCE_GPG_KEY=<id>), and exits non-zero when a check fails.
import * as path from "node:path";
import { evidenceRunDir, signingFromEnv } from "../lib/evidence";
import { formatReport } from "../lib/validate";
import { validateArtifact } from "../lib/validateArtifact";
import { writeValidationEvidence } from "../lib/validationEvidence";
import { argValue } from "../lib/cli";

async function main(): Promise<number> {
    const qcow2 = argValue("qcow2");
    const image = argValue("image");
    const version = argValue("version");
    if (!qcow2 || !image || !version) {
        console.error("usage: make validate QCOW2=/abs/path/image.qcow2 IMAGE=<name> VERSION=<version> [BOOTSTRAP_USER=<bootstrap user>]");
        return 2;
    }
    const report = await validateArtifact(qcow2, { image, version, bootstrapUser: argValue("user") ?? "ansible" });
    console.log(formatReport(report));
    const root = path.resolve(argValue("evidence") ?? "evidence");
    const packet = await writeValidationEvidence(evidenceRunDir(root, image, version, new Date()), report, signingFromEnv());
    console.log(`evidence: ${packet.dir}${packet.signed ? " (signed)" : ""}`);
    return report.passed ? 0 : 1;
}

main().then((c) => process.exit(c), (err: Error) => {
    console.error(`validate: ${err.message}`);
    process.exit(1);
});
