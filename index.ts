// image-factory: read and validate the stack config, build the resource graph per bootstrap pass, export the
// outputs contract. Everything else lives in components/ and lib/.
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { ArtifactStore } from "./components/ArtifactStore";
import { BootstrapPass } from "./components/BootstrapPass";
import { GithubReleaseAsset } from "./components/GithubReleaseAsset";
import { ManagedBaseImage } from "./components/ManagedBaseImage";
import { OciArtifact } from "./components/OciArtifact";
import { Qcow2Image } from "./components/Qcow2Image";
import { ConfigError, parseConfig, readNamespace, resolveAuthorizedKeys, type FactoryConfig, type Pass } from "./lib/config";
import { resolveDebianSource } from "./lib/aptSources";
import { signingFromEnv } from "./lib/evidence";
import { ReleaseMetadata } from "./providers/releaseMetadata";
import { gitRemoteUrl } from "./lib/git";
import { loadRecipe } from "./lib/recipe";

const projectDir = process.cwd();
const resolve = (p: string) => path.resolve(projectDir, p);

function fail(err: unknown): never {
    // RunError prints just the message: the problems list is the whole story, a stack trace adds nothing.
    if (err instanceof ConfigError || (err instanceof Error && (/^(unknown image|images\/)/.test(err.message) || err.name === "BaseImageError"))) {
        throw new pulumi.RunError(err.message);
    }
    throw err;
}

let config: FactoryConfig;
let authorizedKeys: string[] = [];
try {
    config = parseConfig(readNamespace(pulumi.runtime.allConfig()));
    if (config.images.length > 0) authorizedKeys = resolveAuthorizedKeys(config.bootstrapUser, projectDir);
} catch (err) {
    fail(err);
}
const recipes = (() => {
    try {
        return config.images.map((name) => loadRecipe(name, path.join(projectDir, "images")));
    } catch (err) {
        fail(err);
    }
})();

const debian = (() => {
    try {
        return resolveDebianSource(config.debian, recipes.length > 0);
    } catch (err) {
        fail(err);
    }
})();

const store = new ArtifactStore("artifacts", {
    root: resolve(config.artifactStore.root),
    baseUrl: config.artifactStore.publicBaseUrl ?? `http://${config.artifactStore.host}:${config.artifactStore.port}`,
});

/** EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY=<id>: the passphrase comes from the secret factory:gpgPassphrase (or the environment). */
function evidenceSigning() {
    const env = signingFromEnv(process.env);
    if (!env) return undefined;
    const secret = new pulumi.Config("factory").getSecret("gpgPassphrase");
    return { keyId: env.keyId, gnupgHome: env.gnupgHome, passphrase: secret ?? (env.passphrase ? pulumi.secret(env.passphrase) : undefined) };
}

const secretConfig = new pulumi.Config("factory");
/** Registry credentials: factory:oci.username / GHCR_USERNAME / GITHUB_ACTOR, and the secret factory:ghcrToken or GHCR_TOKEN. */
function ociCredentials() {
    const username = config.oci?.username ?? process.env.GHCR_USERNAME ?? process.env.GITHUB_ACTOR;
    const password = secretConfig.getSecret("ghcrToken") ?? (process.env.GHCR_TOKEN ? pulumi.secret(process.env.GHCR_TOKEN) : undefined);
    return password ? { username, password } : undefined;
}
const sourceUrl = gitRemoteUrl(projectDir);
const githubToken = secretConfig.getSecret("githubToken") ?? (process.env.GITHUB_TOKEN ? pulumi.secret(process.env.GITHUB_TOKEN) : undefined);
const primaryImage = config.release?.primaryImage ?? config.images[0];

const baseImages: Record<string, ManagedBaseImage> = {};
function baseImage(id: string, version: string): ManagedBaseImage {
    const key = `${id}@${version}`;
    try {
        baseImages[key] ??= new ManagedBaseImage(`base-${id}-${version}`, {
            id, version, cacheRoot: resolve(config.baseImageCache), mirror: config.baseImageMirror ?? process.env.IMAGE_FACTORY_BASE_IMAGE_MIRROR,
        });
    } catch (err) {
        fail(err);
    }
    return baseImages[key];
}
for (const b of config.baseImages) baseImage(b.id, b.version);

const images: Record<string, pulumi.Output<unknown>> = {};
const passes: Record<string, { images: string[] }> = {};
let previous: BootstrapPass | undefined;
for (const pass of [1, 2, 3] as Pass[]) {
    if (pass > config.maxPass) break;
    const bootstrap = new BootstrapPass({ pass, previous });
    const inPass = recipes.filter((r) => r.pass === pass);
    for (const recipe of inPass) {
        const image = new Qcow2Image(recipe.name, {
            recipe,
            projectDir,
            workDir: resolve(config.workDir),
            storeRoot: store.rootPath,
            bootstrapUser: { name: config.bootstrapUser.name, authorizedKeys },
            domain: config.domain,
            debian,
            versionOverride: config.version,
            evidence: { root: resolve(config.evidence.dir), sign: evidenceSigning() },
        }, bootstrap.childOptions());
        const stored = recipe.targets.includes("store") ? store.publish(image) : undefined;
        const title = pulumi.interpolate`${recipe.name}-${image.version}.qcow2`;
        const oci = config.oci?.enabled && recipe.targets.includes("oci")
            ? new OciArtifact(`${recipe.name}-oci`, {
                registry: config.oci.registry,
                repository: `${config.oci.repository}/${recipe.name}`,
                version: image.version,
                extraTags: config.oci.tags,
                mediaType: config.oci.mediaType ?? `application/vnd.${config.vendor}.qcow2`,
                artifactType: config.oci.artifactType ?? `application/vnd.${config.vendor}.qcow2`,
                file: stored?.path ?? image.path,
                title,
                sha256: image.sha256,
                buildInfo: image.buildInfo,
                sourceUrl,
                plainHttp: config.oci.plainHttp,
                credentials: ociCredentials(),
                provenance: config.oci.provenance,
                deleteOnDestroy: config.oci.deleteOnDestroy,
            }, { parent: image, dependsOn: [image.validation] })
            : undefined;
        const fileName = pulumi.interpolate`${recipe.name}-${image.version}.qcow2`;
        const release = config.release?.enabled && recipe.targets.includes("release")
            ? new GithubReleaseAsset(`${recipe.name}-release`, {
                apiUrl: config.release.apiUrl, owner: config.release.owner, repo: config.release.repo, token: githubToken,
                version: image.version, file: stored?.path ?? image.path, fileName, sha256: image.sha256, size: image.size,
                buildInfo: image.buildInfo, ociRef: oci?.ref, deleteOnDestroy: config.release.deleteOnDestroy,
            }, { parent: image, dependsOn: [image.validation] })
            : undefined;
        const metadata = config.release && (release || oci || stored)
            ? new ReleaseMetadata(`${recipe.name}-release-metadata`, {
                dir: resolve(config.release.metadataDir ?? "."),
                source: config.release.manifestSource,
                primary: recipe.name === primaryImage,
                pkgManifestPath: image.pkgManifestPath,
                record: pulumi.output({
                    version: image.version, sha256: image.sha256, size: image.size, info: image.buildInfo,
                    assetUrl: release?.assetUrl, sumUrl: release?.sha256AssetUrl, releaseUrl: release?.releaseUrl,
                    ociRef: oci?.ref, ociDigest: oci?.manifestDigest, layerDigest: oci?.layerDigest, storeUrl: stored?.url,
                }).apply((o) => {
                    const i = o.info as { base?: { id?: string; sha256?: string }; git?: { commit?: string }; buildTime?: string; buildKey?: string };
                    const name = `${recipe.name}-${o.version}.qcow2`;
                    return {
                        image: recipe.name, version: o.version, tag: o.version,
                        qcow2: { name, sha256: o.sha256, size: o.size, assetUrl: o.assetUrl ?? null, storeUrl: o.storeUrl ?? null },
                        sha256Asset: o.sumUrl ? { name: `${name}.sha256`, url: o.sumUrl } : null,
                        releaseUrl: o.releaseUrl ?? null,
                        oci: o.ociRef && o.ociDigest && o.layerDigest ? { ref: o.ociRef, digest: o.ociDigest, layerDigest: o.layerDigest } : null,
                        base: { id: i.base?.id ?? "unknown", sha256: i.base?.sha256 ?? "unknown" },
                        gitCommit: i.git?.commit ?? "unknown", buildTime: i.buildTime ?? "unknown", buildKey: i.buildKey ?? image.buildKey,
                    };
                }),
            }, { parent: image })
            : undefined;
        images[recipe.name] = pulumi.output({
            pass,
            version: image.version,
            sha256: image.sha256,
            size: image.size,
            buildKey: image.buildKey,
            qcow2Url: stored?.url ?? null,
            sha256Url: stored?.sha256Url ?? null,
            storePath: stored?.path ?? null,
            buildInfo: image.buildInfo,
            ociRef: oci?.ref ?? null,
            ociDigest: oci?.manifestDigest ?? null,
            ociLayerDigest: oci?.layerDigest ?? null,
            ociProvenanceDigest: oci?.provenanceDigest ?? null,
            releaseUrl: release?.releaseUrl ?? null,
            releaseAssetUrl: release?.assetUrl ?? null,
            releaseSha256Url: release?.sha256AssetUrl ?? null,
            toolsJson: metadata?.toolsJsonPath ?? null,
            validation: { passed: image.validation.passed, checks: image.validation.checks.apply((c) => c.map((x) => `${x.status} ${x.id}`)), evidencePath: image.validation.evidencePath },
        });
    }
    bootstrap.finish({ images: inPass.map((r) => r.name) });
    passes[String(pass)] = { images: inPass.map((r) => r.name) };
    previous = bootstrap;
}

export const schemaVersion = 1;
export const lab = config.lab;
export const maxPass = config.maxPass;
export const artifactStore = { root: store.root, baseUrl: store.baseUrl, layout: store.layout };
export { images, passes };
export const baseImageCache = Object.fromEntries(Object.entries(baseImages).map(([k, b]) => [k, { path: b.path, sha256: b.sha256, files: b.files }]));
