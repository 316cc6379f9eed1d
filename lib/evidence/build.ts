// What a build leaves behind: its inputs, the tools, the full (redacted) log, the package manifest, the result.
import * as path from "node:path";
import type { BuildRequest, BuildResult } from "../stages/pipeline";
import { writePacket, type PacketResult, type SigningOptions } from "./packet";

export async function writeBuildEvidence(runDir: string, request: BuildRequest, result: BuildResult, sign?: SigningOptions): Promise<PacketResult> {
    const { buildInfo, ...resultRest } = result;
    return writePacket(path.join(runDir, "build"), [
        { name: "inputs.json", content: `${JSON.stringify(request, null, 2)}\n` },
        { name: "build.json", from: result.buildJsonPath },
        { name: "tools.json", content: `${JSON.stringify(buildInfo.tools ?? {}, null, 2)}\n` },
        { name: "result.json", content: `${JSON.stringify(resultRest, null, 2)}\n` },
        { name: "pkg-manifest.txt", from: result.pkgManifestPath },
        { name: "build.log", from: result.logPath },
    ], { sign });
}
