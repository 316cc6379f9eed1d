// Validation of any qcow2, outside Pulumi (the runbook's `make validate`, `make image.local.validate`):
//   make validate QCOW2=/abs/path.qcow2 IMAGE=<name> VERSION=<version> [BOOTSTRAP_USER=ansible] [BOOT=1]
// Offline checks, then with --boot the boot gate (lib/validation/bootCheck.ts: an overlay, a throw-away key, the smoke checks).
// Prints the reports, writes an evidence packet (.../<UTC>/validate/, signed with EVIDENCE_SIGN=1
// EVIDENCE_GPG_KEY=<id>), and exits non-zero when a check fails.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { bootCheck, bootEvidenceFiles, bootFailure } from "../lib/validation/bootCheck";
import { evidenceRunDir, signingFromEnv } from "../lib/evidence/packet";
import { formatReport } from "../lib/validation/offlineChecks";
import { validateArtifact } from "../lib/validation/validateArtifact";
import { writeValidationEvidence } from "../lib/evidence/validation";
import { parseCli } from "../lib/cli";
import { runbookImageName } from "../lib/recipe";

async function main(): Promise<number> {
    const cli = parseCli({ values: ["qcow2", "image", "version", "user", "evidence"], flags: ["boot"],
        usage: "validate.ts --qcow2 /abs/path/image.qcow2 --image <name> --version <version> [--user ansible] [--evidence <dir>] [--boot]" });
    const argValue = (name: "qcow2" | "image" | "version" | "user" | "evidence") => cli.value(name);
    const qcow2 = argValue("qcow2");
    const named = argValue("image");
    const image = named && runbookImageName(named); // the runbook's IMAGE=debian-12 is debian-12-minimal here
    const version = argValue("version");
    if (!qcow2 || !image || !version) {
        console.error("usage: make validate QCOW2=/abs/path/image.qcow2 IMAGE=<name> VERSION=<version> [BOOTSTRAP_USER=<bootstrap user>] [BOOT=1]");
        return 2;
    }
    const user = argValue("user") ?? "ansible";
    const report = await validateArtifact(qcow2, { image, version, bootstrapUser: user });
    console.log(formatReport(report));
    const extra: Array<{ name: string; content: string }> = [];
    let booted = true;
    if (report.passed && cli.flag("boot")) {
        const work = fs.mkdtempSync(path.join(os.tmpdir(), "if-validate-boot-"));
        try {
            const smoke = path.resolve(__dirname, "..", "images", image, "smoke.sh");
            const r = await bootCheck({ image: qcow2, name: image, user, hostname: `boot-${image}`.slice(0, 63), workDir: work, log: (l) => console.log(l),
                smokeScript: fs.existsSync(smoke) ? smoke : undefined });
            for (const c of r.checks) console.log(`${c.passed ? "PASS" : "FAIL"} ${c.id}: ${c.detail}`);
            extra.push(...bootEvidenceFiles(r));
            booted = r.passed;
            if (!r.passed) console.error(bootFailure(image, version, r).message);
        } finally {
            fs.rmSync(work, { recursive: true, force: true });
        }
    }
    const root = path.resolve(argValue("evidence") ?? "evidence");
    const packet = await writeValidationEvidence(evidenceRunDir(root, image, version, new Date()), report, signingFromEnv(), extra);
    console.log(`evidence: ${packet.dir}${packet.signed ? " (signed)" : ""}`);
    return report.passed && booted ? 0 : 1;
}

main().then((c) => process.exit(c), (err: Error) => {
    console.error(`validate: ${err.message}`);
    process.exit(1);
});
