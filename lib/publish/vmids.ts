// Proxmox VM ids for templates: stable per image version (a re-run gives the same id), never one already taken
// by another kept template, drawn from the image's own block (factory:proxmox.vmids) or the lab's range.
import { sha256Hex } from "../sha256";

export interface TemplateRecord {
    image: string;
    version: string;
    vmid: number;
    name: string;
    sha256: string;
}

export interface VmidPolicy {
    range: [number, number];
    /** First id of a block reserved to an image; the block holds 2 * keepLast ids so versions can rotate. */
    blocks: Record<string, number>;
    keepLast: number;
}

export function allocateVmid(image: string, version: string, previous: readonly TemplateRecord[], policy: VmidPolicy): number {
    const same = previous.find((p) => p.image === image && p.version === version);
    if (same) return same.vmid;
    const used = new Set(previous.map((p) => p.vmid));
    const base = policy.blocks[image];
    const [lo, hi] = base !== undefined ? [base, base + 2 * policy.keepLast - 1] : policy.range;
    const size = hi - lo + 1;
    if (size <= 0) throw new Error(`empty VM id range ${lo}-${hi}`);
    const start = parseInt(sha256Hex(`${image}@${version}`).slice(0, 8), 16) % size;
    for (let i = 0; i < size; i++) {
        const id = lo + ((start + i) % size);
        if (!used.has(id)) return id;
    }
    throw new Error(`no free VM id for ${image} ${version} in ${lo}-${hi} (${used.size} taken by kept templates): ` +
        (base !== undefined ? `raise factory:proxmox.vmids.${image} block or lower keepLast` : "widen factory:proxmox.vmidRange or lower keepLast"));
}

/** The templates to keep after adding `current`: newest first, at most keepLast; the rest are retired. */
export function rotate(current: TemplateRecord, previous: readonly TemplateRecord[], keepLast: number): { kept: TemplateRecord[]; retired: TemplateRecord[] } {
    const others = previous.filter((p) => p.image === current.image && p.version !== current.version);
    const all = [current, ...others];
    return { kept: all.slice(0, keepLast), retired: all.slice(keepLast) };
}

export function templateName(pattern: string, image: string, version: string): string {
    // Proxmox wants a DNS name: dots of the version become dashes.
    return pattern.replace("{image}", image).replace("{version}", version).replace(/\./g, "-").toLowerCase();
}
