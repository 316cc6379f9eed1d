import type { RecipeInput } from "../../lib/recipe";

// FR-8: a cloud-init NoCloud seed (volume "cidata"): attach it beside any cloud image to get the bootstrap user.
const recipe: RecipeInput = {
    name: "nocloud-seed-iso",
    description: "cloud-init NoCloud seed: the bootstrap user with the lab's keys, key-only SSH, DHCP on the first NIC",
    pass: 1,
    kind: "iso",
    builder: { kind: "iso", flavour: "nocloud-seed", hostname: "seeded" },
    targets: ["store", "oci"],
};

export default recipe;
