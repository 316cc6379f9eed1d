// Stack configuration: one schema, validated once at the top of the program, so a bad value fails the preview
// before any resource is touched, with a message naming the key, the value and what is allowed.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { UserError } from "./errors";

export const CONFIG_NAMESPACE = "factory";
/** GitHub's container registry: where images go unless factory:oci.registry or OCI_REGISTRY names another. */
export const DEFAULT_OCI_REGISTRY = "ghcr.io";

const hostPort = z
    .string()
    .refine(isHostPort, { message: "must be a registry host with optional port, without scheme or path (e.g. registry.example.com or 127.0.0.1:5000)" });

export function isHostPort(value: string): boolean {
    if (!value || /[\s/@?#]/.test(value) || value.includes("://")) return false;
    try {
        const u = new URL(`https://${value}`);
        const [hostPart, portPart] = value.startsWith("[") ? [value, undefined] : value.split(":");
        return u.host.length > 0 && hostPart.length > 0 && (portPart === undefined || /^\d{1,5}$/.test(portPart));
    } catch {
        return false;
    }
}

const httpUrl = z
    .string()
    .refine((v) => {
        try {
            const u = new URL(v);
            return u.protocol === "http:" || u.protocol === "https:";
        } catch {
            return false;
        }
    }, { message: "must be an absolute http(s) URL" });

const vendor = z.string().regex(/^[a-z0-9][a-z0-9.-]*$/, "must be lower-case letters, digits, dots or dashes (it becomes application/vnd.<vendor>.qcow2)");
export const VERSION_PATTERN = /^v\d{4}\.\d{2}\.\d{2}(\.\d+)?$/;
const version = z.string().regex(VERSION_PATTERN, "must look like vYYYY.MM.DD or vYYYY.MM.DD.N");
const sshKey = z.string().regex(/^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( .*)?$/, "must be one OpenSSH public key line (ssh-ed25519 AAAA... comment)");
const userName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a POSIX user name (lower case, starts with a letter or _, at most 32 characters)");
const mediaType = z.string().regex(/^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/, "must be a media type such as application/vnd.example.qcow2");

export const passSchema = z.union([z.literal(1), z.literal(2), z.literal(3)], { message: "must be 1, 2 or 3" });

const artifactStoreSchema = z.object({
    root: z.string().min(1).default(".artifacts"),
    host: z.string().min(1).default("127.0.0.1"),
    port: z.number().int().min(1).max(65535).default(8089),
    /** What consumers (Proxmox, Packer) use to reach the store when it is not the loopback address. */
    publicBaseUrl: httpUrl.optional(),
}).strict();

const ociRepository = z.string().regex(/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/, "must be an OCI repository path (lower case, e.g. owner/images)");

/** The shared build cache (lib/buildCache.ts): off unless the stack sets it. */
const buildCacheSchema = z.object({
    /** host[:port]; default: factory:oci.registry, else OCI_REGISTRY, else GitHub's container registry. */
    registry: hostPort,
    /** Entries go to <repository>/build-cache, one tag per image and build key. */
    repository: ociRepository,
    /** Look a build key up before building, and use a verified entry instead of building. */
    pull: z.boolean().default(true),
    /** Push each build that passed its gate (needs the evidence signing key: EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY). */
    push: z.boolean().default(false),
    /** Armored OpenPGP public keys (files, relative to the project) whose entries are trusted. */
    trustedKeys: z.array(z.string().min(1)).default([]),
    plainHttp: z.boolean().default(false),
    username: z.string().optional(),
}).strict().refine((c) => !(c.pull || c.push) || c.trustedKeys.length > 0, {
    message: "needs at least one trusted key: trustedKeys lists armored OpenPGP public key files (gpg --armor --export <the lab's evidence key>), relative to the project",
    path: ["trustedKeys"],
});

const ociSchema = z.object({
    enabled: z.boolean().default(true),
    registry: hostPort,
    repository: ociRepository,
    /** Extra moving tags pushed besides the version, e.g. latest or a channel name. */
    tags: z.array(z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, "must be an OCI tag")).default([]),
    /** Plain HTTP, for a loopback registry only. */
    plainHttp: z.boolean().default(false),
    username: z.string().optional(),
    mediaType: mediaType.optional(),
    artifactType: mediaType.optional(),
    /** Destroy removes the tags it pushed; off by default so consumers never lose a published artifact. */
    deleteOnDestroy: z.boolean().default(false),
    /** Attach an in-toto provenance statement as an OCI referrer. */
    provenance: z.boolean().default(true),
}).strict();

const releaseSchema = z.object({
    enabled: z.boolean().default(true),
    owner: z.string().regex(/^[A-Za-z0-9-]+$/, "must be a GitHub owner (user or organization)"),
    repo: z.string().regex(/^[A-Za-z0-9._-]+$/, "must be a GitHub repository name"),
    apiUrl: httpUrl.default("https://api.github.com"),
    /** Which location manifests/tools.json points `qcow2` at: the release asset, the oci:// ref or the store URL. */
    manifestSource: z.enum(["asset", "oci", "store"]).default("asset"),
    /** The image manifests/tools.json describes (Toolsmith reads one image); default: the first of factory:images. */
    primaryImage: z.string().optional(),
    /** Where release metadata (releases/, docs/releases.md, manifests/tools.json) is written; default the checkout. */
    metadataDir: z.string().optional(),
    deleteOnDestroy: z.boolean().default(false),
}).strict();

const proxmoxSchema = z.object({
    enabled: z.boolean().default(true),
    endpoint: httpUrl,
    insecure: z.boolean().default(false),
    node: z.string().min(1),
    imageStorage: z.string().min(1).default("local"),
    diskStorage: z.string().min(1).default("local-lvm"),
    bridge: z.string().min(1).default("vmbr0"),
    vmidRange: z.tuple([z.number().int().min(100), z.number().int().max(999999999)]).default([9000, 9099]),
    /** Fixed VM ids per image name; images not listed get an id from vmidRange. */
    vmids: z.record(z.string(), z.number().int().min(100)).default({}),
    namePattern: z.string().regex(/\{image\}/, "must contain {image}").default("tpl-{image}-{version}"),
    keepLast: z.number().int().min(1).max(50).default(3),
    /** Where the node downloads images from: the artifact store (its publicBaseUrl) or the GitHub release asset. */
    imageSource: z.enum(["store", "release"]).default("store"),
    /** Packer → Proxmox builds (FR-2): private key of the bootstrap user, for Packer's SSH into the clone. */
    packerSshKeyFile: z.string().min(1).optional(),
}).strict();

const debianSchema = z.object({
    suite: z.enum(["bookworm"]).default("bookworm"),
    /** Default: the mirror this machine's APT sources use for <suite> main. */
    mirror: httpUrl.optional(),
    /** Default: the mirror this machine's APT sources use for <suite>-security main. */
    securityMirror: httpUrl.optional(),
    /** Snapshot archive timestamp; when set, both archives come from <snapshotBase>/archive/{debian,debian-security}/<snapshot>. */
    snapshot: z.string().regex(/^\d{8}T\d{6}Z$/, "must be a snapshot timestamp like 20250520T000000Z").optional(),
    snapshotBase: httpUrl.optional(),
}).strict().refine((d) => !d.snapshot || !!d.snapshotBase, {
    message: "a snapshot needs snapshotBase, the base URL of your Debian snapshot archive",
    path: ["snapshotBase"],
});

export const configSchema = z.object({
    lab: z.enum(["local", "dvnt", "dvntm"]),
    domain: z.string().regex(/^[a-z0-9.-]+$/, "must be a DNS domain").default("localdomain"),
    maxPass: passSchema.default(3),
    vendor: vendor.default("deevnet"),
    /** Image names (folders under images/) built by this stack. */
    images: z.array(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "must be an image folder name")).default([]),
    version: version.optional(),
    workDir: z.string().min(1).default(".cache"),
    artifactStore: artifactStoreSchema.default({ root: ".artifacts", host: "127.0.0.1", port: 8089 }),
    bootstrapUser: z.object({
        name: userName.default("ansible"),
        sshAuthorizedKeys: z.array(sshKey).default([]),
        /** Files holding public keys (relative to the project), e.g. the key scripts/setup.sh makes for `local`. */
        sshAuthorizedKeyFiles: z.array(z.string().min(1)).default([]),
    }).strict().refine((u) => u.sshAuthorizedKeys.length + u.sshAuthorizedKeyFiles.length > 0, {
        message: "needs at least one SSH key (sshAuthorizedKeys or sshAuthorizedKeyFiles): images have no password login",
    }).default({ name: "ansible", sshAuthorizedKeys: [], sshAuthorizedKeyFiles: [] }),
    debian: debianSchema.default({ suite: "bookworm" }),
    oci: ociSchema.optional(),
    buildCache: buildCacheSchema.optional(),
    release: releaseSchema.optional(),
    proxmox: proxmoxSchema.optional(),
    /** Base images from images/catalog.ts to keep in the cache (recipes' bases are added automatically). */
    baseImages: z.array(z.object({ id: z.string().min(1), version: z.string().min(1) }).strict()).default([]),
    /** Where base images are cached: <baseImageCache>/images/<id>/<version>/. */
    baseImageCache: z.string().min(1).default(".cache/base-images"),
    /** Fetch base images from this mirror (http(s):// or file:// directory) instead of their upstream URLs. */
    baseImageMirror: z.string().regex(/^(https?|file):\/\/\S+$/, "must be an http(s):// or file:// URL").optional(),
    /** Reuse images another stack built (e.g. dvntm taking dvnt's) instead of rebuilding them. */
    reuse: z.object({
        stack: z.string().regex(/^[^/\s]+\/[^/\s]+\/[^/\s]+$/, "must be org/project/stack"),
        images: z.array(z.string().regex(/^[a-z0-9][a-z0-9-]*$/)).min(1),
    }).strict().optional(),
    evidence: z.object({
        dir: z.string().min(1).default("evidence"),
    }).strict().default({ dir: "evidence" }),
    /** The gate before publishing: offline checks always; a boot with smoke checks unless turned off. */
    validation: z.object({
        boot: z.boolean().default(true),
        /** Seconds from qemu start to the end of the smoke checks (TCG is 5-10x slower than KVM). */
        bootTimeoutSeconds: z.number().int().min(60).max(7200).default(900),
        /** Per image: a longer timeout, or no boot (an image whose boot cannot be tried here). */
        images: z.record(z.string(), z.object({
            boot: z.boolean().optional(),
            bootTimeoutSeconds: z.number().int().min(60).max(7200).optional(),
        }).strict()).default({}),
    }).strict().default({ boot: true, bootTimeoutSeconds: 900, images: {} }),
}).strict();

export type FactoryConfig = z.infer<typeof configSchema>;
export type OciConfig = z.infer<typeof ociSchema>;
export type BuildCacheConfig = z.infer<typeof buildCacheSchema>;
export type ReleaseConfig = z.infer<typeof releaseSchema>;
export type ProxmoxConfig = z.infer<typeof proxmoxSchema>;
export type Pass = z.infer<typeof passSchema>;

/** Keys whose values are credentials: read with getSecret only, never part of the validated plain object. */
export const SECRET_KEYS = ["githubToken", "ghcrToken", "proxmoxApiToken", "gpgPassphrase"] as const;
export type SecretKey = (typeof SECRET_KEYS)[number];

export class ConfigError extends UserError {
    constructor(readonly problems: string[]) {
        super(`invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}\n` +
            `Fix the value in Pulumi.<stack>.yaml (or with \`pulumi config set --path ${CONFIG_NAMESPACE}:<key> <value>\`) and run again.`);
        this.name = "ConfigError";
    }
}

function describeValue(raw: unknown, path: PropertyKey[]): string {
    let v: unknown = raw;
    for (const p of path) {
        if (v === null || typeof v !== "object") return "<missing>";
        v = (v as Record<PropertyKey, unknown>)[p];
    }
    if (v === undefined) return "<missing>";
    const s = JSON.stringify(v);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function keyName(path: PropertyKey[]): string {
    const [head, ...rest] = path.map(String);
    let key = `${CONFIG_NAMESPACE}:${head ?? ""}`;
    for (const p of rest) key += /^\d+$/.test(p) ? `[${p}]` : `.${p}`;
    return key;
}

/**
 * Validates raw config values (as read from the stack, objects already parsed from JSON) and applies
 * defaults. Throws ConfigError listing every problem as `key = value: what is allowed`.
 */
export function parseConfig(raw: Record<string, unknown>, env: Record<string, string | undefined> = process.env,
    opts: { placeholderKeys?: "refuse" | "allow" } = {}): FactoryConfig {
    for (const k of SECRET_KEYS) {
        if (k in raw) delete raw[k];
    }
    // The OCI registry's host: the stack's factory:oci.registry, else OCI_REGISTRY (the repository variable CI passes),
    // else GitHub's container registry, the seeds' target. A stack file names its target by owner and repository.
    const oci = raw.oci as Record<string, unknown> | undefined;
    if (oci && typeof oci === "object" && oci.enabled === false && oci.registry === undefined) raw.oci = undefined; // off: nothing to resolve
    else if (oci && typeof oci === "object" && oci.registry === undefined) raw.oci = { ...oci, registry: env.OCI_REGISTRY || DEFAULT_OCI_REGISTRY };
    const cache = raw.buildCache as Record<string, unknown> | undefined;
    if (cache && typeof cache === "object" && cache.registry === undefined) {
        const ociRegistry = raw.oci && typeof raw.oci === "object" ? (raw.oci as Record<string, unknown>).registry : undefined;
        raw.buildCache = { ...cache, registry: ociRegistry ?? (env.OCI_REGISTRY || DEFAULT_OCI_REGISTRY) };
    }
    const result = configSchema.safeParse(raw);
    if (result.success) {
        const placeholders = placeholderProblems(result.data.lab, inlineKeys(result.data));
        if (placeholders.length && opts.placeholderKeys !== "allow") throw new ConfigError(placeholders);
        return result.data;
    }
    const problems = result.error.issues.map((issue) => {
        if (issue.code === "unrecognized_keys") {
            return `${keyName(issue.path)}: unknown key(s) ${issue.keys.join(", ")}; see the config reference in README.md`;
        }
        const allowed = issue.code === "invalid_value" && "values" in issue
            ? `must be one of ${(issue.values as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`
            : issue.message;
        return `${keyName(issue.path)} = ${describeValue(raw, issue.path)}: ${allowed}`;
    });
    throw new ConfigError(problems);
}

/**
 * Public keys that must never go into a lab's images: the placeholder this repository ships in the lab stack files
 * (nobody holds its private half). By OpenSSH fingerprint, so a changed comment does not get it through.
 */
export const PLACEHOLDER_KEYS: Record<string, string> = {
    "SHA256:kEN4mdJycd0rO6mph9ZtY7UXfmMjzajSgsiRsVK+7A4": "the placeholder key shipped in Pulumi.dvnt.yaml and Pulumi.dvntm.yaml",
};

/** An OpenSSH public key line's fingerprint as `ssh-keygen -l` prints it (SHA256:<base64 of the blob's sha256>). */
export function sshFingerprint(line: string): string {
    const blob = Buffer.from(line.trim().split(/\s+/)[1] ?? "", "base64");
    return `SHA256:${crypto.createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The inline bootstrap keys with the config key each stands at. */
export function inlineKeys(config: FactoryConfig): Array<{ key: string; line: string }> {
    return config.bootstrapUser.sshAuthorizedKeys.map((line, i) => ({ key: `${CONFIG_NAMESPACE}:bootstrapUser.sshAuthorizedKeys[${i}]`, line }));
}

/** In a lab stack, a placeholder key is refused, naming the config key it came from and what to put there. */
export function placeholderProblems(lab: string, keys: Array<{ key: string; line: string }>): string[] {
    if (lab === "local") return [];
    return keys.flatMap(({ key, line }) => {
        const fp = sshFingerprint(line);
        return PLACEHOLDER_KEYS[fp] ? [`${key} = ${JSON.stringify(line.length > 60 ? `${line.slice(0, 57)}...` : line)}: is ${PLACEHOLDER_KEYS[fp]} (${fp}); ` +
            "nobody in the lab holds its private half: put the lab's bootstrap public key there (ssh-keygen -y -f <the lab's key>)"] : [];
    });
}

/**
 * Picks this namespace's keys out of the stack's full config map ("factory:maxPass" -> "3") and decodes
 * values: Pulumi keeps structured values and numbers as JSON text, so JSON is parsed where it parses.
 */
export function readNamespace(all: Record<string, string>, namespace = CONFIG_NAMESPACE): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const prefix = `${namespace}:`;
    for (const [key, value] of Object.entries(all)) {
        if (!key.startsWith(prefix)) continue;
        const name = key.slice(prefix.length);
        out[name] = decodeValue(value);
    }
    return out;
}

function decodeValue(value: string): unknown {
    const t = value.trim();
    if (/^[[{]/.test(t) || /^-?\d+(\.\d+)?$/.test(t) || t === "true" || t === "false" || t === "null") {
        try {
            return JSON.parse(t);
        } catch {
            return value;
        }
    }
    return value;
}

/** The bootstrap user's public keys: inline ones plus the content of key files (relative to the project). */
export function resolveAuthorizedKeys(user: FactoryConfig["bootstrapUser"], projectDir: string, lab: FactoryConfig["lab"]): string[] {
    const keys = [...user.sshAuthorizedKeys];
    user.sshAuthorizedKeyFiles.forEach((f, i) => {
        const file = path.resolve(projectDir, f);
        const key = `${CONFIG_NAMESPACE}:bootstrapUser.sshAuthorizedKeyFiles[${i}]`;
        if (!fs.existsSync(file)) {
            throw new ConfigError([`${key} = ${JSON.stringify(f)}: no such file (for the local stack, bash scripts/setup.sh makes it)`]);
        }
        for (const line of fs.readFileSync(file, "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))) {
            if (!sshKey.safeParse(line).success) throw new ConfigError([`${key} = ${JSON.stringify(f)}: holds a line that is not an OpenSSH public key`]);
            const placeholder = placeholderProblems(lab, [{ key: `${key} (${f})`, line }]);
            if (placeholder.length) throw new ConfigError(placeholder);
            keys.push(line);
        }
    });
    if (keys.length === 0) {
        throw new ConfigError([`${CONFIG_NAMESPACE}:bootstrapUser: needs at least one SSH key (sshAuthorizedKeys or sshAuthorizedKeyFiles): images have no password login`]);
    }
    return keys;
}
