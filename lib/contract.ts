// The contract, in one place: zod schemas of an image's build info, its record in the stack outputs, and the
// outputs themselves. The program's types are inferred from them, and schemas/outputs.schema.json (what Terraform,
// Ansible and bin/consumer-vars check against) is generated from them: `npm run schema` writes it, and a unit test
// fails when the file is stale. Any change to the outputs' shape is a breaking change: bump OUTPUTS_SCHEMA_VERSION.
import { z } from "zod";

export const OUTPUTS_SCHEMA_VERSION = 2;

const name = z.string().regex(/^[a-z0-9][a-z0-9-]*$/).meta({ id: "name" });
const version = z.string().regex(/^v\d{4}\.\d{2}\.\d{2}(\.\d+)?$/).meta({ id: "version" });
const sha256 = z.string().regex(/^[0-9a-f]{64}$/).meta({ id: "sha256" });
const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/).meta({ id: "digest" });
const url = z.string().regex(/^https?:\/\/\S+$/).meta({ id: "url" });
const pass = z.literal([1, 2, 3]);

/** What a build records about itself (build.json next to the artifact, and the image's `buildInfo` output). */
export const buildInfoSchema = z.looseObject({
    schemaVersion: z.number().optional(),
    image: z.string(),
    version: z.string(),
    buildKey: z.string(),
    buildTime: z.string(),
    description: z.string().optional(),
    kind: z.string().optional(),
    pass: z.number().optional(),
    builder: z.string().optional(),
    builderRevision: z.string().optional(),
    format: z.string().optional(),
    sourceDateEpoch: z.number().optional(),
    bootstrapUser: z.string().optional(),
    git: z.looseObject({ commit: z.string(), dirty: z.boolean().optional(), commitTime: z.number().optional() }),
    /** What the image was built on; null for an image made from nothing else (a NoCloud seed ISO). */
    base: z.looseObject({ id: z.string(), sha256: z.string(), mirror: z.string().optional() }).nullable(),
    recipe: z.looseObject({}),
    tools: z.record(z.string(), z.string()),
});
export type BuildInfo = z.infer<typeof buildInfoSchema>;
/** Build info as read back (state written by older programs, another stack's outputs): any field may be absent. */
export type RecordedBuildInfo = Partial<BuildInfo>;

const proxmoxRef = z.strictObject({ node: z.string(), vmid: z.int().min(100), name: z.string() }).nullable().meta({ id: "proxmoxRef" });
export const templateRecordSchema = z.strictObject({ image: name, version, vmid: z.int(), name: z.string(), sha256 }).meta({ id: "template" });
const templates = z.array(templateRecordSchema).nullable();

export const builtImageRecordSchema = z.strictObject({
    pass,
    version,
    sha256,
    size: z.int().min(1),
    buildKey: sha256,
    format: z.enum(["qcow2", "img.xz", "iso"]).optional()
        .describe("artifact format (added in schemaVersion 1, optional: absent means qcow2); qcow2Url is the stored file's URL whatever the format"),
    qcow2Url: url.nullable(),
    sha256Url: url.nullable(),
    storePath: z.string().nullable(),
    buildInfo: buildInfoSchema,
    ociRef: z.string().regex(/^oci:\/\/\S+$/).nullable(),
    ociDigest: digest.nullable(),
    ociLayerDigest: digest.nullable(),
    ociProvenanceDigest: digest.nullable(),
    releaseUrl: url.nullable(),
    releaseAssetUrl: url.nullable(),
    releaseSha256Url: url.nullable(),
    toolsJson: z.string().nullable(),
    proxmox: proxmoxRef,
    validation: z.strictObject({
        passed: z.literal(true),
        checks: z.array(z.string().regex(/^pass /)),
        evidencePath: z.string(),
        checksRan: z.array(z.enum(["offline", "boot"])).min(1).optional().describe("the gates the image passed before publishing"),
        boot: z.strictObject({
            accelerator: z.enum(["kvm", "tcg"]),
            sshReadySeconds: z.number().min(0),
            totalSeconds: z.number().min(0),
            checks: z.array(z.string().regex(/^pass /)),
        }).nullable().optional().describe("the boot gate's run (factory:validation.boot); null when it was off"),
    }),
    proxmoxTemplates: templates,
}).meta({ title: "built by this stack" });

export const reusedImageRecordSchema = z.strictObject({
    pass,
    reusedFrom: z.string(),
    version,
    sha256,
    size: z.int(),
    qcow2Url: url.nullable(),
    proxmox: proxmoxRef,
    proxmoxTemplates: templates,
}).meta({ title: "reused from another stack" });

export const nodeBuiltImageRecordSchema = z.strictObject({
    pass,
    format: z.literal("proxmox-template"),
    version,
    sha256: z.null().describe("no digest: Packer and Ansible changed the disk on the node, and the factory never sees its bytes (schemaVersion 2; " +
        "schemaVersion 1 gave the base image's sha256 here)"),
    derivedFrom: sha256.describe("the sha256 of the image whose template Packer cloned: what the disk was made from"),
    buildKey: sha256,
    builtOn: z.string(),
    proxmox: proxmoxRef,
    validation: z.strictObject({
        checksRan: z.array(z.never()).length(0).describe("none: the offline checks and the boot gate need the image's bytes"),
        note: z.string(),
    }),
}).meta({ title: "built on the Proxmox node by Packer (no file, so no sha256: derivedFrom is the digest of the image its cloned template came from)" });

export const imageRecordSchema = z.union([builtImageRecordSchema, reusedImageRecordSchema, nodeBuiltImageRecordSchema]).meta({ id: "image" });
export type BuiltImageRecord = z.infer<typeof builtImageRecordSchema>;
export type ReusedImageRecord = z.infer<typeof reusedImageRecordSchema>;
export type NodeBuiltImageRecord = z.infer<typeof nodeBuiltImageRecordSchema>;
export type ImageRecord = z.infer<typeof imageRecordSchema>;
export type TemplateRecord = z.infer<typeof templateRecordSchema>;

export const stackOutputsSchema = z.strictObject({
    schemaVersion: z.literal(OUTPUTS_SCHEMA_VERSION),
    lab: z.enum(["local", "dvnt", "dvntm"]),
    maxPass: pass,
    artifactStore: z.strictObject({ root: z.string(), baseUrl: url, layout: z.string() }),
    passes: z.partialRecord(z.enum(["1", "2", "3"]), z.strictObject({ images: z.array(name) })),
    images: z.record(name, imageRecordSchema),
    baseImageCache: z.record(z.string(), z.looseObject({ path: z.string(), sha256, files: z.looseObject({}) })),
    proxmox: z.strictObject({ node: z.string(), templates: z.record(z.string(), z.array(templateRecordSchema)) }).nullable(),
});
export type StackOutputs = z.infer<typeof stackOutputsSchema>;

/** schemas/outputs.schema.json, as generated from stackOutputsSchema (JSON Schema 2020-12). */
export function outputsJsonSchema(): Record<string, unknown> {
    const generated = z.toJSONSchema(stackOutputsSchema, { target: "draft-2020-12" }) as Record<string, unknown>;
    const { $schema, ...rest } = generated;
    return {
        $schema,
        $id: `urn:image-factory:schema:outputs:${OUTPUTS_SCHEMA_VERSION}`,
        title: "image-factory stack outputs (pulumi stack output --json)",
        description: "The contract Terraform and Ansible consume, generated from lib/contract.ts (npm run schema). " +
            "Any change to this shape is a breaking change: bump schemaVersion.",
        ...rest,
    };
}

/** The file's text: stable, two-space indented, final newline. */
export function outputsJsonSchemaText(): string {
    return `${JSON.stringify(outputsJsonSchema(), null, 2)}\n`;
}
