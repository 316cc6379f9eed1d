import type { RecipeInput } from "../../lib/recipe";

// FR-5: the node that runs this factory (pass 1: it bootstraps both labs). Built by Packer's qemu builder from
// the factory's own debian-12-minimal image, provisioned by Ansible over SSH.
const recipe: RecipeInput = {
    name: "builder-node",
    description: "Builder node: qemu/KVM, Packer, Ansible, the engine and tools, nginx serving the artifact store, /srv laid out for ~1 TB",
    pass: 1,
    kind: "builder-node",
    builder: { kind: "packer", template: "image.pkr.hcl", base: { image: "debian-12-minimal" }, playbook: "playbook.yml", diskSize: "8G" },
    targets: ["store", "oci", "release"],
};

export default recipe;
