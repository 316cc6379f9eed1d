// verify-evidence --dir <packet>: checks every file against SHA256SUMS and, when present, the detached
// signature SHA256SUMS.asc. Exit 0 when the packet holds; 1 naming the first file that fails; 2 on bad usage.
import * as path from "node:path";
import { verifyPacket } from "../lib/evidence/packet";

async function main(argv: string[]): Promise<number> {
    const i = argv.indexOf("--dir");
    const dir = i >= 0 ? argv[i + 1] : undefined;
    if (!dir || argv.includes("--help") || argv.includes("-h")) {
        console.error("usage: verify-evidence --dir <evidence packet dir>   (a .../<UTC>/build or .../<UTC>/validate directory)");
        return 2;
    }
    const r = await verifyPacket(path.resolve(dir));
    if (!r.ok) {
        console.error(`verify-evidence: FAILED ${r.failure?.file}: ${r.failure?.reason}`);
        return 1;
    }
    console.log(`verify-evidence: OK ${r.checked} files match SHA256SUMS; signature ${r.signature}`);
    return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err: Error) => {
    console.error(`verify-evidence: ${err.message}`);
    process.exit(1);
});
