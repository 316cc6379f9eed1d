import type { ImageRecipe } from "../../lib/recipe";

/**
 * The builder node as CI builds it: no extra packages, no tool or node copies, no forge kit (the full node is ~20 minutes
 * under TCG). forge-install and the role's layout stay, so the Packer and Ansible path is the full one's.
 */
export function smallBuilderNode(recipe: ImageRecipe): ImageRecipe {
    const vars = { builder_node_packages: [], builder_node_tools_dir: "", builder_node_node_binary: "", builder_node_forge_kit: false };
    return { ...recipe, builder: { ...recipe.builder, vars } as ImageRecipe["builder"] };
}
