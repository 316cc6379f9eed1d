import type { RecipeInput } from "../../lib/recipe";

// FR-2: the node-built variant of debian-12-minimal (Packer's proxmox-clone builder on the lab's node). Listed only
// in stacks with factory:proxmox; it needs debian-12-minimal's template first (same pass, listed before it).
const recipe: RecipeInput = {
    name: "debian-12-minimal-pve",
    description: "debian-12-minimal re-provisioned on the Proxmox node by Packer (proxmox-clone + Ansible) into a new template",
    pass: 1,
    kind: "vm",
    builder: { kind: "packer", path: "proxmox", template: "proxmox.pkr.hcl", base: { image: "debian-12-minimal" }, playbook: "playbook.yml" },
    targets: ["proxmox"],
};

export default recipe;
