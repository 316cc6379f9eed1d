// Fill the base-image cache ahead of time (on a connected machine, or from a mirror), so builds and CI run
// without network access:
//   bin/hydrate-base-images [--id <id> --version <v>] [--cache .cache/base-images] [--mirror <http(s)://… | file:///dir>]
// Prints one line per file: id, version, artifact, sha256, path. Exit 1 naming what failed.
import * as path from "node:path";
import { catalog } from "../images/catalog";
import { ensureImage, lookup } from "../lib/baseImages/cache";
import { parseCli } from "../lib/cli";

async function main(): Promise<number> {
    const cli = parseCli({ values: ["id", "version", "cache", "mirror"], usage: "hydrate-base-images [--id <id> --version <v>] [--cache <dir>] [--mirror <url>]" });
    const argValue = (name: "id" | "version" | "cache" | "mirror") => cli.value(name);
    const id = argValue("id");
    const version = argValue("version");
    const specs = id ? [lookup(catalog, id, version ?? catalog.find((s) => s.id === id)?.version ?? "")] : catalog;
    const cacheRoot = path.resolve(argValue("cache") ?? process.env.IMAGE_FACTORY_BASE_IMAGE_CACHE ?? ".cache/base-images");
    const mirror = argValue("mirror") ?? process.env.IMAGE_FACTORY_BASE_IMAGE_MIRROR;
    for (const spec of specs) {
        const r = await ensureImage(spec, { cacheRoot, mirror, progress: (l) => console.error(l) });
        for (const [name, f] of Object.entries(r.files)) console.log(`${spec.id}\t${spec.version}\t${name}\t${f.sha256}\t${f.path}\t${r.actions[name]}`);
    }
    return 0;
}

main().then((c) => process.exit(c), (err: Error) => {
    console.error(`hydrate-base-images: ${err.message}`);
    process.exit(1);
});
