import type { RecipeInput } from "../../lib/recipe";

// Pass 3 (services and applications): a web front end for the lab's services.
const recipe: RecipeInput = {
    name: "debian-12-services",
    description: "Debian 12 service host with nginx as the front end, Ansible-ready like every image",
    pass: 3,
    kind: "vm",
    builder: { kind: "rootfs", suite: "bookworm", packages: ["nginx-light"], diskSizeMiB: 2048, playbook: "playbook.yml" },
    targets: ["store", "oci", "release", "proxmox"],
};

export default recipe;
