// `make list`: every image under images/, generated from the recipes themselves (adding a folder adds a line),
// with its artifact type, builder, pass and publishing targets, and the make targets that build it.
//   list-images.ts          a table
//   list-images.ts --make   the same, indented for `make list`
//   list-images.ts --json   machine-readable
//   list-images.ts --names [--kind K]   names only (the Makefile's per-type targets use this)
//   list-images.ts --stack S --build-cache   JSON: the images stack S builds itself, for up-stack.yml's build-cache
//                                            matrix ([] unless factory:buildCache pushes)
import * as path from "node:path";
import { parseCli } from "../lib/cli";
import { isUserError } from "../lib/errors";
import { artifactFormat, buildsOnNode, listImageNames, loadRecipe, type ImageRecipe } from "../lib/recipe";
import { stackConfig } from "../lib/stackFile";
import type { FactoryConfig } from "../lib/config";

export interface ImageRow {
    name: string;
    kind: ImageRecipe["kind"];
    builder: string;
    format: string;
    pass: number;
    targets: string[];
    description: string;
}

export function imageRows(imagesDir?: string): ImageRow[] {
    return listImageNames(imagesDir).map((name) => {
        const r = loadRecipe(name, imagesDir);
        const b = r.builder;
        const builder = b.kind === "packer" ? `packer/${b.path}` : b.kind === "iso" ? `iso/${b.flavour}` : b.kind;
        return { name, kind: r.kind, builder, format: buildsOnNode(r) ? "proxmox-template" : artifactFormat(r),
            pass: r.pass, targets: r.targets, description: r.description };
    });
}

/**
 * What a stack's build-cache matrix builds: the images it builds itself (not reused from another lab, not built on
 * the Proxmox node), when its factory:buildCache pushes; none otherwise.
 */
export function buildCacheMatrix(config: FactoryConfig, imagesDir?: string): string[] {
    if (!config.buildCache?.push) return [];
    const reused = new Set(config.reuse?.images ?? []);
    return config.images.filter((n) => !reused.has(n) && !buildsOnNode(loadRecipe(n, imagesDir)));
}

function main(): void {
    const cli = parseCli({ values: ["kind", "stack"], flags: ["json", "names", "make", "build-cache"], usage: "list-images.ts [--make | --json | --names] [--kind <type>] | --stack <stack> --build-cache" });
    if (cli.flag("build-cache")) {
        const stack = cli.value("stack");
        if (!stack) throw new Error("--build-cache needs --stack <stack>");
        console.log(JSON.stringify(buildCacheMatrix(stackConfig(stack, path.resolve(__dirname, ".."), undefined, { placeholderKeys: "allow" }))));
        return;
    }
    const rows = imageRows();
    const kind = cli.value("kind");
    const selected = kind ? rows.filter((r) => r.kind === kind) : rows;
    if (cli.flag("json")) {
        console.log(JSON.stringify(selected, null, 2));
        return;
    }
    if (cli.flag("names")) {
        console.log(selected.map((r) => r.name).join("\n"));
        return;
    }
    const indent = cli.flag("make") ? "  " : "";
    const header = ["image", "type", "builder", "artifact", "pass", "targets", "make"];
    const table = [header, ...selected.map((r) => [r.name, r.kind, r.builder, r.format, String(r.pass), r.targets.join(","), `image-${r.name}`])];
    const widths = header.map((_, i) => Math.max(...table.map((row) => row[i].length)));
    for (const row of table) console.log(indent + row.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd());
    if (indent) {
        const kinds = [...new Set(rows.map((r) => r.kind))].sort();
        console.log(`${indent}per type: ${kinds.map((k) => `make ${k}`).join(", ")}   (one image: make image-<name>)`);
    }
}

if (require.main === module) {
    try {
        main();
    } catch (err) {
        console.error(`list-images: ${(err as Error).message}`);
        process.exit(isUserError(err) ? 2 : 1);
    }
}
