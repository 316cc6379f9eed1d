// The per-user cache outside the checkout (content-keyed: Go, npm, built tools, packages, base images, tool
// versions), shared by fresh clones. scripts/env.sh and scripts/require-ts-cached.js (plain JavaScript: it is what
// loads TypeScript) spell the same rule.
import * as os from "node:os";
import * as path from "node:path";

/** IMAGE_FACTORY_CACHE, else $XDG_CACHE_HOME/image-factory, else ~/.cache/image-factory; read at each call. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
    return env.IMAGE_FACTORY_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "image-factory");
}
