// verify-evidence --dir <dir>: checks every evidence packet at or below dir (a packet is a directory with
// SHA256SUMS: .../<UTC>/build or .../<UTC>/validate) — each file against SHA256SUMS and, when present, the detached
// signature SHA256SUMS.asc. So the runbook's `--dir /path/to/evidence/dir` works at any level: one packet, one run
// (<UTC>, with build/ and validate/), an image's versions, or the whole evidence tree. Exit 0 when every packet
// holds; 1 naming each file that fails, or when there is no packet; 2 on bad usage.
import * as fs from "node:fs";
import * as path from "node:path";
import { verifyPacket } from "../lib/evidence/packet";

/** Packet directories at or below dir, in path order. */
export function findPackets(dir: string): string[] {
    if (fs.existsSync(path.join(dir, "SHA256SUMS"))) return [dir];
    return fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort()
        .flatMap((name) => findPackets(path.join(dir, name)));
}

async function main(argv: string[]): Promise<number> {
    const i = argv.indexOf("--dir");
    const dir = i >= 0 ? argv[i + 1] : undefined;
    if (!dir || argv.includes("--help") || argv.includes("-h")) {
        console.error("usage: verify-evidence --dir <dir>   (an evidence packet, e.g. evidence/images/vm/<image>/<version>/<UTC>/validate, or any directory above packets)");
        return 2;
    }
    const root = path.resolve(dir);
    if (!fs.existsSync(root)) {
        console.error(`verify-evidence: ${root} does not exist`);
        return 1;
    }
    const packets = findPackets(root);
    if (packets.length === 0) {
        console.error(`verify-evidence: no evidence packet (a directory with SHA256SUMS) at or below ${root}`);
        return 1;
    }
    let failed = 0;
    for (const p of packets) {
        const r = await verifyPacket(p);
        // The packet's own name only when --dir was a directory above packets.
        const name = p === root ? "" : `${path.relative(root, p)}: `;
        if (r.ok) {
            console.log(`verify-evidence: OK ${name}${r.checked} files match SHA256SUMS; signature ${r.signature}`);
        } else {
            failed++;
            console.error(`verify-evidence: FAILED ${name}${r.failure?.file}: ${r.failure?.reason}`);
        }
    }
    if (packets.length > 1) console.log(`verify-evidence: ${packets.length - failed} of ${packets.length} packets hold`);
    return failed ? 1 : 0;
}

if (require.main === module) {
    main(process.argv.slice(2)).then((code) => process.exit(code), (err: Error) => {
        console.error(`verify-evidence: ${err.message}`);
        process.exit(1);
    });
}
