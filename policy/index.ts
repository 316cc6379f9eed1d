// image-factory's CrossGuard policy pack, run by `pulumi preview --policy-pack policy` in pull-request checks.
// Dynamic resources of ours have type tokens pulumi-nodejs:dynamic/image-factory:<Type>, so policies can name them.
import { PolicyPack, type PolicyResource, type ReportViolation, type StackValidationArgs } from "@pulumi/policy";

const OURS = "pulumi-nodejs:dynamic/image-factory:";
const VERSION = /^v\d{4}\.\d{2}\.\d{2}(\.\d+)?$/;
const SENSITIVE = /(token|password|passphrase|secret|apikey|api_key)/i;

/** Publishing resources and the property that carries the artifact's digest. */
const PUBLISHERS: Record<string, string> = {
    [`${OURS}StoredArtifact`]: "sha256",
    [`${OURS}OciPush`]: "sha256",
    [`${OURS}GithubReleaseUpload`]: "sha256",
    // The shared build cache: what other builders pull instead of building must be this stack's build.
    [`${OURS}BuildCacheEntry`]: "sha256",
    "proxmoxve:download/file:File": "checksum",
};
const BUILDERS = new Set([`${OURS}ImageBuild`]);

/**
 * The stack this one takes artifacts from (factory:reuse.stack): dvntm registers dvnt's builds. Their sha256 is that
 * stack's build output, read through a StackReference, which policies cannot see as a dependency (read resources are
 * not among a policy's resources); the program passes it through a ReusedArtifact record, which they can.
 */
function reuseStack(): string | undefined {
    const config = JSON.parse(process.env.PULUMI_CONFIG ?? "{}") as Record<string, string>;
    const raw = config["factory:reuse"] ?? config["factory:config:reuse"];
    try {
        return raw ? (JSON.parse(raw) as { stack?: string }).stack : undefined;
    } catch {
        return undefined;
    }
}

function fromBuild(r: PolicyResource, field: string, buildDigests: Set<string>, reusedFrom: string | undefined): boolean {
    const deps = r.propertyDependencies[field] ?? [];
    if (deps.some((d) => BUILDERS.has(d.type) || d.type === "image-factory:image:Image")) return true;
    if (reusedFrom && deps.some((d) => d.type === `${OURS}ReusedArtifact` && d.props.stack === reusedFrom)) return true;
    const v = r.props[field];
    return typeof v === "string" && buildDigests.has(v);
}

function versionsOf(r: PolicyResource): Array<[string, unknown]> {
    const p = r.props;
    switch (r.type) {
        case `${OURS}ImageBuild`:
        case `${OURS}StoredArtifact`:
        case `${OURS}BuildCacheEntry`:
            return [["version", p.version]];
        case `${OURS}OciPush`:
            return [["tags[0]", Array.isArray(p.tags) ? p.tags[0] : undefined]];
        case `${OURS}GithubReleaseUpload`:
            return [["tag", p.tag]];
        default:
            return [];
    }
}

new PolicyPack("image-factory", {
    policies: [
        {
            name: "published-sha256-from-build",
            description: "Every published artifact (store, OCI, GitHub release, Proxmox download) carries a sha256 that comes from a build (this stack's, or the reused lab stack's).",
            enforcementLevel: "mandatory",
            validateStack: (args: StackValidationArgs, report: ReportViolation) => {
                const digests = new Set(args.resources.filter((r) => BUILDERS.has(r.type)).map((r) => r.props.sha256).filter((v): v is string => typeof v === "string"));
                const reused = reuseStack();
                for (const r of args.resources) {
                    const field = PUBLISHERS[r.type];
                    if (!field) continue;
                    if (!fromBuild(r, field, digests, reused)) report(`${r.name} (${r.type}) publishes a ${field} that does not come from a build's sha256 output`, r.urn);
                }
            },
        },
        {
            name: "version-format",
            description: "Versions and tags match vYYYY.MM.DD or vYYYY.MM.DD.N.",
            enforcementLevel: "mandatory",
            validateStack: (args, report) => {
                for (const r of args.resources) {
                    for (const [field, v] of versionsOf(r)) {
                        if (v !== undefined && (typeof v !== "string" || !VERSION.test(v))) report(`${r.name}: ${field} ${JSON.stringify(v)} is not vYYYY.MM.DD(.N)`, r.urn);
                    }
                }
            },
        },
        {
            name: "no-plaintext-secrets",
            description: "Credentials in stack config (tokens, passwords, passphrases) are stored as Pulumi secrets.",
            enforcementLevel: "mandatory",
            validateStack: (_args, report) => {
                const config = JSON.parse(process.env.PULUMI_CONFIG ?? "{}") as Record<string, string>;
                const secretKeys = new Set(JSON.parse(process.env.PULUMI_CONFIG_SECRET_KEYS ?? "[]") as string[]);
                for (const key of Object.keys(config).sort()) {
                    const normal = key.replace(":config:", ":");
                    if (SENSITIVE.test(normal.split(":").pop() ?? "") && !secretKeys.has(normal) && !secretKeys.has(key)) {
                        report(`${normal} is stored in plain text in the stack config: set it with \`pulumi config set --secret ${normal} …\``);
                    }
                }
            },
        },
        {
            name: "proxmox-download-checksum",
            description: "Proxmox downloads always verify a sha256 checksum that comes from the build.",
            enforcementLevel: "mandatory",
            validateStack: (args, report) => {
                for (const r of args.resources) {
                    if (r.type !== "proxmoxve:download/file:File") continue;
                    if (r.props.checksumAlgorithm !== "sha256") report(`${r.name}: checksumAlgorithm must be sha256, got ${JSON.stringify(r.props.checksumAlgorithm)}`, r.urn);
                    const c = r.props.checksum;
                    const wired = (r.propertyDependencies.checksum ?? []).length > 0;
                    if (c === undefined && !wired) report(`${r.name}: a download without a checksum`, r.urn);
                    if (c !== undefined && !(typeof c === "string" && /^[0-9a-f]{64}$/.test(c))) report(`${r.name}: checksum must be the artifact's sha256 (64 hex digits)`, r.urn);
                }
            },
        },
    ],
});
