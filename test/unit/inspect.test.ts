import { strict as assert } from "node:assert";
import { parsePartitionTable } from "../../lib/validation/inspect";

function mbr(entries: Array<{ type: number; start: number; count: number }>): Buffer {
    const b = Buffer.alloc(2048 * 512);
    entries.forEach((e, i) => {
        const o = 446 + i * 16;
        b[o + 4] = e.type;
        b.writeUInt32LE(e.start, o + 8);
        b.writeUInt32LE(e.count, o + 12);
    });
    b.writeUInt16LE(0xaa55, 510);
    return b;
}

describe("lib/inspect partition tables", () => {
    it("reads MBR partitions", () => {
        const parts = parsePartitionTable(mbr([{ type: 0x83, start: 2048, count: 4000 }, { type: 0x82, start: 6048, count: 100 }]), 1 << 30);
        assert.deepEqual(parts, [
            { index: 1, offset: 2048 * 512, size: 4000 * 512, scheme: "mbr" },
            { index: 2, offset: 6048 * 512, size: 100 * 512, scheme: "mbr" },
        ]);
    });

    it("reads GPT partitions behind a protective MBR", () => {
        const b = mbr([{ type: 0xee, start: 1, count: 0xffffffff }]);
        const hdr = 512;
        b.write("EFI PART", hdr, "latin1");
        b.writeBigUInt64LE(2n, hdr + 72); // entries at LBA 2
        b.writeUInt32LE(128, hdr + 80);
        b.writeUInt32LE(128, hdr + 84);
        const entry = (i: number, first: number, last: number) => {
            const o = 2 * 512 + i * 128;
            b.fill(0x11, o, o + 16); // a non-zero type GUID
            b.writeBigUInt64LE(BigInt(first), o + 32);
            b.writeBigUInt64LE(BigInt(last), o + 40);
        };
        entry(0, 2048, 10239);
        entry(13, 10240, 20479);
        assert.deepEqual(parsePartitionTable(b, 1 << 30), [
            { index: 1, offset: 2048 * 512, size: 8192 * 512, scheme: "gpt" },
            { index: 14, offset: 10240 * 512, size: 10240 * 512, scheme: "gpt" },
        ]);
    });

    it("treats a disk without a partition table as one file system", () => {
        assert.deepEqual(parsePartitionTable(Buffer.alloc(4096), 12345), [{ index: 0, offset: 0, size: 12345, scheme: "none" }]);
    });
});
