import type { RecipeInput } from "../../lib/recipe";

// FR-4: the SDR Pi (pass 3: a service device), Raspberry Pi OS Bookworm arm64 customised offline.
const recipe: RecipeInput = {
    name: "sdr-pi",
    description: "SDR Pi: Raspberry Pi OS Lite Bookworm arm64 with rtl-sdr, SPI/I2C/UART for SDR HATs, key-only SSH for the bootstrap user",
    pass: 3,
    kind: "pi",
    builder: { kind: "pi", base: { catalog: "raspios-bookworm-arm64-lite", version: "2025-05-13" }, playbook: "playbook.yml", hostname: "sdr-pi" },
    targets: ["store", "oci"],
};

export default recipe;
