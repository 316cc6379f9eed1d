// The Debian archives this machine's APT sources name, as builds use them when a stack sets none.
import { resolveDebianSource } from "../../lib/aptSources";
import type { DebianSource } from "../../lib/aptSources";

export function machineDebian(): DebianSource {
    return resolveDebianSource({ suite: "bookworm" }, true);
}
