// Image recipes: an image is data (images/<name>/image.ts) plus a pipeline of named stages (lib/stages/*).
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { passSchema } from "./config";
import { UserError } from "./errors";

export const TARGETS = ["store", "oci", "release", "proxmox"] as const;

const rootfsBuilder = z.object({
    kind: z.literal("rootfs"),
    suite: z.enum(["bookworm"]).default("bookworm"),
    /** Packages on top of the base set every rootfs image gets (lib/stages/rootfs.ts BASE_PACKAGES). */
    packages: z.array(z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/)).default([]),
    /** Virtual disk size; cloud-init grows the root partition to whatever disk the VM gets. */
    diskSizeMiB: z.number().int().min(1024).max(65536).default(2048),
    /** Playbook (relative to the image folder) run against the image root over Ansible's chroot connection. */
    playbook: z.string().optional(),
    hostname: z.string().regex(/^[a-z0-9-]{1,63}$/).optional(),
}).strict();

/** Where a Packer or Pi build starts from: another image of this factory, or an entry of the base-image catalog. */
const baseRef = z.union([
    z.object({ image: z.string().regex(/^[a-z0-9][a-z0-9-]*$/) }).strict(),
    z.object({ catalog: z.string().regex(/^[a-z0-9][a-z0-9.-]*$/), version: z.string().min(1) }).strict(),
]);

const packerBuilder = z.object({
    kind: z.literal("packer"),
    /** HCL2 template in the image folder. `qemu` builds a qcow2 here; `proxmox` builds the template on the node (FR-2). */
    template: z.string().default("image.pkr.hcl"),
    path: z.enum(["qemu", "proxmox"]).default("qemu"),
    base: baseRef,
    playbook: z.string().optional(),
    diskSize: z.string().regex(/^\d+[MG]$/).default("8G"),
    memoryMiB: z.number().int().min(512).max(65536).default(2048),
    cpus: z.number().int().min(1).max(64).default(2),
    /** Ansible variables for the playbook (not secrets: they land in the build log and build.json). */
    vars: z.record(z.string(), z.unknown()).default({}),
}).strict();

const piBuilder = z.object({
    kind: z.literal("pi"),
    base: baseRef,
    playbook: z.string().optional(),
    growMiB: z.number().int().min(0).max(65536).default(512),
    hostname: z.string().regex(/^[a-z0-9-]{1,63}$/).optional(),
    vars: z.record(z.string(), z.unknown()).default({}),
}).strict();

const isoBuilder = z.object({
    kind: z.literal("iso"),
    /** debian-installer: unattended install (preseed) on isolinux; nocloud-seed: a cloud-init NoCloud seed. */
    flavour: z.enum(["debian-installer", "nocloud-seed"]),
    volumeId: z.string().regex(/^[A-Za-z0-9_]{1,32}$/).optional(),
    hostname: z.string().regex(/^[a-z0-9-]{1,63}$/).optional(),
    /** Extra packages the installer adds. */
    packages: z.array(z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/)).default([]),
    kernelArgs: z.string().default("console=ttyS0,115200n8"),
}).strict();

export const recipeSchema = z.object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
    description: z.string().min(1),
    pass: passSchema,
    /** Artifact type (FR-1..FR-8): VM template image, Raspberry Pi image, bootable ISO, builder node image. */
    kind: z.enum(["vm", "pi", "iso", "builder-node"]),
    builder: z.discriminatedUnion("kind", [rootfsBuilder, packerBuilder, piBuilder, isoBuilder]),
    /** Where the artifact is published. */
    targets: z.array(z.enum(TARGETS)).default(["store"]),
    /** Unix time used as SOURCE_DATE_EPOCH when no mirror snapshot pins one (reproducible timestamps). */
    sourceDateEpoch: z.number().int().min(0).default(1735689600),
}).strict().superRefine((r, ctx) => {
    const b = r.builder.kind;
    const expected: Record<string, string[]> = { vm: ["rootfs", "packer"], "builder-node": ["rootfs", "packer"], pi: ["pi"], iso: ["iso"] };
    if (!expected[r.kind].includes(b)) {
        ctx.addIssue({ code: "custom", path: ["builder", "kind"], message: `a ${r.kind} image is built by ${expected[r.kind].join(" or ")}, not ${b}` });
    }
    if (buildsOnNode(r) && r.targets.some((t) => t !== "proxmox")) {
        ctx.addIssue({ code: "custom", path: ["targets"], message: "a Packer → Proxmox build makes a template on the node and no file: its only target is proxmox" });
    }
    if ((b === "pi" || b === "iso") && r.targets.includes("proxmox")) {
        ctx.addIssue({ code: "custom", path: ["targets"], message: `a ${r.kind} image cannot become a Proxmox VM template` });
    }
});

export type ImageRecipe = z.infer<typeof recipeSchema>;
export type RecipeInput = z.input<typeof recipeSchema>;
export type RootfsBuilder = z.infer<typeof rootfsBuilder>;
export type PackerBuilder = z.infer<typeof packerBuilder>;
export type PiBuilder = z.infer<typeof piBuilder>;
export type IsoBuilder = z.infer<typeof isoBuilder>;
export type BaseRef = z.infer<typeof baseRef>;

/** A Packer → Proxmox recipe: built on the lab's node into a template, no file (only `pulumi up` of a lab stack builds it). */
export function buildsOnNode(recipe: Pick<ImageRecipe, "builder">): boolean {
    return recipe.builder.kind === "packer" && recipe.builder.path === "proxmox";
}

/** The file an image's build produces: VM images are qcow2, Pi images flashable raw .img.xz, ISOs .iso. */
export type ArtifactFormat = "qcow2" | "img.xz" | "iso";

export function artifactFormat(recipe: Pick<ImageRecipe, "builder">): ArtifactFormat {
    switch (recipe.builder.kind) {
        case "pi": return "img.xz";
        case "iso": return "iso";
        default: return "qcow2";
    }
}

export const IMAGES_DIR = path.resolve(__dirname, "..", "images");

export function listImageNames(imagesDir = IMAGES_DIR): string[] {
    return fs.readdirSync(imagesDir, { withFileTypes: true })
        .filter((e) => e.isDirectory() && fs.existsSync(path.join(imagesDir, e.name, "image.ts")))
        .map((e) => e.name)
        .sort();
}

/**
 * Names the runbook (seed 002) uses for images that are called otherwise here: its "Debian 12 v1 (example)" builds
 * `IMAGE=debian-12`, which is this factory's minimal Debian 12 image. Only the runbook's commands (make
 * image.local.*, bin/build-image.ts, bin/validate.ts) read them; stack config names images by their folder.
 */
export const RUNBOOK_IMAGE_NAMES: Record<string, string> = { "debian-12": "debian-12-minimal" };

/** The image folder a runbook command's IMAGE names. */
export function runbookImageName(name: string): string {
    return RUNBOOK_IMAGE_NAMES[name] ?? name;
}

export function loadRecipe(name: string, imagesDir = IMAGES_DIR): ImageRecipe {
    const file = path.join(imagesDir, name, "image.ts");
    if (!fs.existsSync(file)) {
        throw new UserError(`unknown image ${JSON.stringify(name)}: there is no ${path.relative(process.cwd(), file)}; ` +
            `known images: ${listImageNames(imagesDir).join(", ") || "(none)"}`);
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- recipes are data modules picked by name at run time
    const mod = require(file) as { default?: unknown };
    const parsed = recipeSchema.safeParse(mod.default);
    if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
        throw new UserError(`images/${name}/image.ts is not a valid recipe: ${problems}`);
    }
    if (parsed.data.name !== name) throw new UserError(`images/${name}/image.ts declares name ${parsed.data.name}; the folder and the name must match`);
    return parsed.data;
}

/** images/<name>/smoke.sh: checks run in the booted image. It does not shape the image, so it is not in the build key. */
export const SMOKE_SCRIPT = "smoke.sh";

/**
 * The recipe part of the build key, sorted: every file of the image folder (but smoke.sh), the Ansible tree's own
 * files (requirements.yml: the collections), and the roles the image's playbooks use, followed through the roles'
 * include_role/import_role and meta dependencies. Only those roles: a change to the builder node's role must not
 * rebuild the Pi images. A role name Ansible would only know at run time (templated), or that no local role matches
 * and no collection names (a.b.c), takes every role in: a stale image costs more than a rebuild.
 */
export function recipeFiles(name: string, imagesDir = IMAGES_DIR): string[] {
    const imageDir = path.join(imagesDir, name);
    const ansibleDir = path.resolve(imagesDir, "..", "ansible");
    const rolesDir = path.join(ansibleDir, "roles");
    const out: string[] = [];
    const walk = (dir: string, depth = Infinity) => {
        if (!fs.existsSync(dir)) return;
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
            const p = path.join(dir, e.name);
            if (e.isDirectory()) {
                if (e.name === "collections" || e.name === "node_modules") continue; // installed content, keyed by requirements.yml
                if (depth > 0) walk(p, depth - 1);
            } else if (e.isFile() && !(dir === imageDir && e.name === SMOKE_SCRIPT)) out.push(p);
        }
    };
    walk(imageDir);
    walk(ansibleDir, 0);
    for (const role of rolesUsed(imageDir, rolesDir)) walk(path.join(rolesDir, role));
    return out.sort();
}

/** Local roles an image's playbooks use, transitively (see recipeFiles); every role when one cannot be known. */
export function rolesUsed(imageDir: string, rolesDir: string): string[] {
    const local = fs.existsSync(rolesDir) ? fs.readdirSync(rolesDir).filter((r) => fs.statSync(path.join(rolesDir, r)).isDirectory()).sort() : [];
    const yamlFiles = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => path.join(dir, f)) : []);
    const used = new Set<string>();
    let unknown = false;
    // Role names wherever Ansible takes them: a play's roles, meta's dependencies (a name, or {role|name: …}), and
    // include_role/import_role (any collection prefix) with their name, at any depth (blocks, rescue, always).
    const namesIn = (node: unknown, out: string[] = []): string[] => {
        if (Array.isArray(node)) node.forEach((n) => namesIn(n, out));
        else if (node && typeof node === "object") {
            for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
                if ((key === "roles" || key === "dependencies") && Array.isArray(value)) {
                    for (const r of value) {
                        const named = r as { role?: unknown; name?: unknown } | string;
                        const n = typeof named === "string" ? named : named?.role ?? named?.name;
                        if (typeof n === "string") out.push(n);
                    }
                } else if (/(^|\.)(include|import)_role$/.test(key)) {
                    const n = (value as { name?: unknown } | null)?.name;
                    if (typeof n === "string") out.push(n);
                } else namesIn(value, out);
            }
        }
        return out;
    };
    const consider = (file: string) => {
        let doc: unknown;
        try {
            doc = parseYaml(fs.readFileSync(file, "utf8"));
        } catch {
            unknown = true; // the plan's own YAML check names the error; the key just stays on the safe side
            return;
        }
        for (const n of namesIn(doc)) {
            if (local.includes(n)) {
                if (used.has(n)) continue;
                used.add(n);
                for (const sub of ["tasks", "handlers", "meta"]) yamlFiles(path.join(rolesDir, n, sub)).forEach(consider);
            } else if (n.includes("{{") || !/^[\w-]+\.[\w-]+\.[\w-]+$/.test(n)) unknown = true; // not ours and not a collection's: Ansible's search path decides
        }
    };
    yamlFiles(imageDir).forEach(consider);
    return unknown ? local : [...used].sort();
}
