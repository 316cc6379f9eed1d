// Proxmox VM ids for templates: stable per image version (a re-run gives the same id), never one already taken by a
// kept template or any VM of the cluster, drawn from the image's own block (factory:proxmox.vmids) or the lab's range
// outside every block.
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

/** A VM of the cluster as /cluster/resources lists it: its id, name, node and tags (ours carry if-<image>). */
export interface ClusterVm {
    vmid: number;
    name?: string;
    node?: string;
    tags?: string;
}

/** The ids of an image's own block (factory:proxmox.vmids.<image>): 2 × keepLast from its first. */
export function blockOf(image: string, policy: VmidPolicy): [number, number] | undefined {
    const base = policy.blocks[image];
    return base === undefined ? undefined : [base, base + 2 * policy.keepLast - 1];
}

/** Blocks that share an id name both images: two images' versions would take turns holding one id. */
export function overlappingBlocks(policy: VmidPolicy): string[] {
    const blocks = Object.keys(policy.blocks).sort().map((image) => ({ image, range: blockOf(image, policy) as [number, number] }));
    const out: string[] = [];
    for (let i = 0; i < blocks.length; i++) {
        for (const other of blocks.slice(i + 1)) {
            const [a, b] = [blocks[i], other];
            if (a.range[0] <= b.range[1] && b.range[0] <= a.range[1]) out.push(`${a.image} ${a.range.join("-")} and ${b.image} ${b.range.join("-")}`);
        }
    }
    return out;
}

const tagsOf = (vm: ClusterVm) => (vm.tags ?? "").split(/[;,\s]+/).filter(Boolean);

/**
 * The VM id of an image version's template: the one it already has (its record), else the first free id from a
 * hash of image and version, in the image's own block or else in the lab's range without any image's block. Free:
 * held by no kept template and by no VM of the cluster. A VM that is not this image's template inside the image's
 * own block fails naming it: the block was reserved for the image.
 */
export function allocateVmid(image: string, version: string, previous: readonly TemplateRecord[], policy: VmidPolicy, cluster: readonly ClusterVm[] = []): number {
    const same = previous.find((p) => p.image === image && p.version === version);
    if (same) return same.vmid;
    // A template of this very version the records lost (a run cut short after the node made it): its id, so the
    // create is refused loudly rather than a second template made beside it.
    const made = cluster.find((vm) => tagsOf(vm).includes(`if-${image}`) && tagsOf(vm).includes(version.toLowerCase()));
    if (made) return made.vmid;
    const overlaps = overlappingBlocks(policy);
    if (overlaps.length) throw new Error(`factory:proxmox.vmids: blocks overlap (${overlaps.join("; ")}): each image's block is 2 × keepLast ids from its first; move one`);
    const block = blockOf(image, policy);
    if (block) {
        const foreign = cluster.filter((vm) => vm.vmid >= block[0] && vm.vmid <= block[1] && !tagsOf(vm).includes(`if-${image}`));
        if (foreign.length) {
            const vm = foreign[0];
            throw new Error(`factory:proxmox.vmids.${image} reserves ${block.join("-")} for ${image}'s templates, but VM ${vm.vmid}` +
                `${vm.name ? ` (${vm.name}${vm.node ? ` on ${vm.node}` : ""})` : ""} is not one of them: move that VM, or give ${image} another block`);
        }
    }
    const used = new Set([...previous.map((p) => p.vmid), ...cluster.map((vm) => vm.vmid)]);
    const [lo, hi] = block ?? policy.range;
    const size = hi - lo + 1;
    if (size <= 0) throw new Error(`empty VM id range ${lo}-${hi}`);
    // Outside its own block, an image never takes an id of another image's block.
    const reserved = (id: number) => !block && Object.keys(policy.blocks).some((other) => {
        const r = blockOf(other, policy) as [number, number];
        return id >= r[0] && id <= r[1];
    });
    const start = parseInt(sha256Hex(`${image}@${version}`).slice(0, 8), 16) % size;
    for (let i = 0; i < size; i++) {
        const id = lo + ((start + i) % size);
        if (!used.has(id) && !reserved(id)) return id;
    }
    throw new Error(`no free VM id for ${image} ${version} in ${lo}-${hi} (taken by kept templates or other VMs of the cluster): ` +
        (block ? `raise factory:proxmox.vmids.${image} block or lower keepLast` : "widen factory:proxmox.vmidRange or lower keepLast"));
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
