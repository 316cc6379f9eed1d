import type { RecipeInput } from "../../lib/recipe";

// FR-8: unattended-install media (pass 1: bare metal such as the builder node itself, or a Proxmox host).
const recipe: RecipeInput = {
    name: "debian-12-installer-iso",
    description: "Debian 12 netboot installer with a preseed: unattended install of an Ansible-ready Debian (key-only SSH, sudo, python3, cloud-init)",
    pass: 1,
    kind: "iso",
    builder: { kind: "iso", flavour: "debian-installer", volumeId: "IF_DEBIAN12_INSTALL" },
    targets: ["store", "oci"],
};

export default recipe;
