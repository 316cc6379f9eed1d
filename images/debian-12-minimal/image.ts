import type { RecipeInput } from "../../lib/recipe";

const recipe: RecipeInput = {
    name: "debian-12-minimal",
    description: "Debian 12 (bookworm) minimal, Ansible-ready: cloud-init, key-only sshd, python3, passwordless sudo for the bootstrap user",
    pass: 1,
    kind: "vm",
    builder: { kind: "rootfs", suite: "bookworm", diskSizeMiB: 2048, playbook: "playbook.yml" },
    targets: ["store", "oci", "release", "proxmox"],
};

export default recipe;
