// Fill the base-image cache ahead of time (on a connected machine, or from a mirror), so builds and CI run
// without network access:
//   bin/hydrate-base-images [--id <id> --version <v>] [--cache .cache/base-images] [--mirror <http(s)://… | file:///dir>]
// Prints one line per file: id, version, artifact, sha256, path. Exit 1 naming what failed.
import * as path from "node:path";
import { catalog } from "../images/catalog";
import { ensureImage, lookup } from "../lib/baseImages";

function opt(name: string): string | undefined {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<number> {
    const id = opt("id");
    const version = opt("version");
    const specs = id ? [lookup(catalog, id, version ?? catalog.find((s) => s.id === id)?.version ?? "")] : catalog;
    const cacheRoot = path.resolve(opt("cache") ?? process.env.IMAGE_FACTORY_BASE_IMAGE_CACHE ?? ".cache/base-images");
    const mirror = opt("mirror") ?? process.env.IMAGE_FACTORY_BASE_IMAGE_MIRROR;
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
