// What a validation leaves behind: the report as JSON and as text, the tools that read the image.
import * as path from "node:path";
import { writePacket, type PacketResult, type SigningOptions } from "./packet";
import { formatReport, type ValidationReport } from "../validation/offlineChecks";

/** `extra`: the boot gate's report and console log, signed with the rest. */
export async function writeValidationEvidence(runDir: string, report: ValidationReport, sign?: SigningOptions,
    extra: Array<{ name: string; content: string }> = []): Promise<PacketResult> {
    return writePacket(path.join(runDir, "validate"), [
        { name: "report.json", content: `${JSON.stringify(report, null, 2)}\n` },
        { name: "report.txt", content: `${formatReport(report)}\n` },
        { name: "tools.json", content: `${JSON.stringify(report.tools, null, 2)}\n` },
        ...extra,
    ], { sign });
}
