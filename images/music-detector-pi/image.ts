import type { RecipeInput } from "../../lib/recipe";

// FR-4: the music-detector Pi (pass 3), Raspberry Pi OS Bookworm arm64 customised offline.
const recipe: RecipeInput = {
    name: "music-detector-pi",
    description: "Music-detector Pi: Raspberry Pi OS Lite Bookworm arm64 with ALSA, the detector service and its account, key-only SSH",
    pass: 3,
    kind: "pi",
    builder: { kind: "pi", base: { catalog: "raspios-bookworm-arm64-lite", version: "2025-05-13" }, playbook: "playbook.yml", hostname: "music-detector" },
    targets: ["store", "oci"],
};

export default recipe;
