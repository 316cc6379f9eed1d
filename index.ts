// image-factory: the stack config → its images, pass by pass → the outputs contract (schemas/outputs.schema.json).
// Wiring only: what images share is made in components/context.ts, one image's life in components/Image.ts.
import * as pulumi from "@pulumi/pulumi";
import { BootstrapPass } from "./components/BootstrapPass";
import { stackContext } from "./components/context";
import { Image, reusedImage } from "./components/Image";
import { finishPublishing, type PublishedImage } from "./components/publish";
import type { Pass } from "./lib/config";
import { OUTPUTS_SCHEMA_VERSION } from "./lib/contract";
import type { TemplateRecord } from "./lib/publish/vmids";

const stack = stackContext(process.cwd());
const { config } = stack;

const images: Record<string, pulumi.Output<unknown>> = {};
const made: Record<string, Image> = {};
const published: Record<string, PublishedImage> = {};
const passOf: Record<string, Pass> = {};
const passes: Record<string, { images: string[] }> = {};
let previous: BootstrapPass | undefined;
for (const pass of [1, 2, 3] as Pass[]) {
    if (pass > config.maxPass) break;
    const bootstrap = new BootstrapPass({ pass, previous });
    const inPass = stack.recipes.filter((r) => r.pass === pass);
    for (const recipe of inPass) {
        if (stack.reused.has(recipe.name)) {
            images[recipe.name] = reusedImage(recipe, pass, stack, bootstrap);
            continue;
        }
        const image = new Image(recipe.name, { recipe, pass, stack, earlier: { ...made }, labAfter: bootstrap.labAfter }, bootstrap.childOptions());
        made[recipe.name] = image;
        if (image.record) images[recipe.name] = image.record;
        if (image.published) {
            published[recipe.name] = image.published;
            passOf[recipe.name] = pass;
        }
    }
    bootstrap.finish({ images: inPass.map((r) => r.name) });
    passes[String(pass)] = { images: inPass.map((r) => r.name) };
    previous = bootstrap;
}
// The release of a tag is published once all its images are up, which may be in a later pass.
for (const [name, record] of Object.entries(finishPublishing(published, stack))) images[name] = pulumi.output({ pass: passOf[name], ...record });

export const schemaVersion = OUTPUTS_SCHEMA_VERSION;
export const lab = config.lab;
export const maxPass = config.maxPass;
export const artifactStore = { root: stack.store.root, baseUrl: stack.store.baseUrl, layout: stack.store.layout };
export const baseImageCache = Object.fromEntries(Object.entries(stack.baseImages).map(([k, b]) => [k, { path: b.path, sha256: b.sha256, files: b.files }]));
/** Templates kept per image, read back on the next run to keep VM ids stable and retire the oldest. */
export const proxmox = stack.proxmox
    ? {
        node: config.proxmox?.node,
        templates: pulumi.output(images).apply((all) => Object.fromEntries(Object.entries(all as Record<string, { proxmoxTemplates?: TemplateRecord[] | null }>)
            .filter(([, v]) => v.proxmoxTemplates).map(([k, v]) => [k, v.proxmoxTemplates as TemplateRecord[]]))),
    }
    : null;
export { images, passes };
