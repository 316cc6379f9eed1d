import type { RecipeInput } from "../../lib/recipe";

// Pass 2 (compute and platforms): a container host for the lab's platform services.
const recipe: RecipeInput = {
    name: "debian-12-platform",
    description: "Debian 12 container host (podman, rootless-ready), Ansible-ready like every image",
    pass: 2,
    kind: "vm",
    builder: { kind: "rootfs", suite: "bookworm", packages: ["podman", "uidmap", "slirp4netns", "fuse-overlayfs"], diskSizeMiB: 4096, playbook: "playbook.yml" },
    targets: ["store", "oci", "release", "proxmox"],
};

export default recipe;
