// The publishing targets of one image, wired from the stack config: artifact store, OCI, GitHub release assets and
// Proxmox template, each after the validation gate. Not a component of its own: the resources hang under the
// image's Image component (or, for an image reused from another stack, under its pass). What is shared by images —
// the GitHub release of a tag, and the release metadata that names its URLs — is made after every pass
// (finishPublishing): the release is published once all its images are up, which may be in a later pass.
import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { FactoryConfig } from "../lib/config";
import type { RecordedBuildInfo } from "../lib/contract";
import type { ClusterVm, TemplateRecord } from "../lib/publish/vmids";
import { ReleaseMetadata } from "../providers/releaseMetadata";
import type { ArtifactStore } from "./ArtifactStore";
import { GithubRelease } from "./GithubRelease";
import { GithubReleaseAsset } from "./GithubReleaseAsset";
import { OciArtifact } from "./OciArtifact";
import { ProxmoxTemplate } from "./ProxmoxTemplate";
import type { BuiltArtifact } from "./artifact";

export interface PublishContext {
    config: FactoryConfig;
    store: ArtifactStore;
    resolve: (p: string) => string;
    sourceUrl?: string;
    githubToken?: pulumi.Output<string>;
    ociCredentials?: { username?: string; password: pulumi.Output<string> };
    primaryImage?: string;
    proxmox?: { provider: proxmoxve.Provider; apiToken?: pulumi.Output<string>; previous: pulumi.Output<TemplateRecord[]>; access: pulumi.Resource;
        /** The cluster's VMs (ids a new template must not take). */
        cluster: pulumi.Output<ClusterVm[]> };
    bootstrapUser: { name: string; keys: string[] };
}

export interface Targets {
    store: boolean;
    oci: boolean;
    release: boolean;
    proxmox: boolean;
}

/** One image's publishing so far: its record for the outputs, and what finishPublishing still needs. */
export interface PublishedImage {
    record: Record<string, unknown>;
    /** Not an output: the template resource, for images built on the node from it (Packer → Proxmox). */
    proxmoxResource?: ProxmoxTemplate;
    image: BuiltArtifact;
    releaseAsset?: GithubReleaseAsset;
    oci?: OciArtifact;
    stored?: ReturnType<ArtifactStore["publish"]>;
}

/**
 * The publishing of one built image, its resources children of `parent` (the image's component). Store, OCI and
 * release asset wait for the validation gate only; the Proxmox template, what brings the image into the lab, also
 * waits for `labAfter` (the previous bootstrap pass).
 */
export function publishBuiltImage(image: BuiltArtifact, targets: Targets, ctx: PublishContext, parent: pulumi.Resource, labAfter: pulumi.Resource[]): PublishedImage {
    const { config } = ctx;
    const name = image.name;
    const gate = [image.validation];
    const stored = targets.store ? ctx.store.publish(image) : undefined;
    const title = pulumi.interpolate`${name}-${image.version}.${image.format}`;
    // qcow2 keeps the configurable type the consumers (fetch, tools.json) know; other formats say what they are.
    const fileType = image.format === "qcow2" ? undefined : `application/vnd.${config.vendor}.${image.format === "iso" ? "iso" : "img+xz"}`;
    const oci = config.oci?.enabled && targets.oci
        ? new OciArtifact(`${name}-oci`, {
            registry: config.oci.registry,
            repository: `${config.oci.repository}/${name}`,
            version: image.version,
            extraTags: config.oci.tags,
            mediaType: fileType ?? config.oci.mediaType ?? `application/vnd.${config.vendor}.qcow2`,
            artifactType: fileType ?? config.oci.artifactType ?? `application/vnd.${config.vendor}.qcow2`,
            file: stored?.path ?? image.path,
            title,
            sha256: image.sha256,
            buildInfo: image.buildInfo,
            sourceUrl: ctx.sourceUrl,
            plainHttp: config.oci.plainHttp,
            credentials: ctx.ociCredentials,
            provenance: config.oci.provenance,
            deleteOnDestroy: config.oci.deleteOnDestroy,
        }, { parent, dependsOn: gate })
        : undefined;
    const releaseAsset = config.release?.enabled && targets.release
        ? new GithubReleaseAsset(`${name}-release`, {
            apiUrl: config.release.apiUrl, owner: config.release.owner, repo: config.release.repo, token: ctx.githubToken,
            version: image.version, file: stored?.path ?? image.path, fileName: title, sha256: image.sha256, size: image.size,
            buildInfo: image.buildInfo, ociRef: oci?.ref, deleteOnDestroy: config.release.deleteOnDestroy,
        }, { parent, dependsOn: gate })
        : undefined;
    if (config.proxmox?.imageSource === "release" && targets.proxmox && image.format === "qcow2") {
        // The release of a tag is published at the end of the run, after every pass (finishPublishing), and pass N+1's
        // templates wait for all of pass N, templates included: a template of this stack cannot wait for this stack's release.
        throw new pulumi.RunError(`${name}: factory:proxmox.imageSource: release is for images reused from another stack (factory:reuse), ` +
            "whose release is published already; a stack registers the images it builds itself from its artifact store: " +
            "remove imageSource (default store) and set factory:artifactStore.publicBaseUrl");
    }
    const proxmox = targets.proxmox && ctx.proxmox && image.format === "qcow2"
        ? proxmoxTemplate(name, { version: image.version, sha256: image.sha256, buildInfo: image.buildInfo, url: stored?.url }, ctx, { parent, dependsOn: [...gate, ...labAfter] })
        : undefined;
    return {
        image, releaseAsset, oci, stored, proxmoxResource: proxmox,
        record: {
            version: image.version,
            sha256: image.sha256,
            size: image.size,
            buildKey: image.buildKey,
            format: image.format,
            qcow2Url: stored?.url ?? null,
            sha256Url: stored?.sha256Url ?? null,
            storePath: stored?.path ?? null,
            buildInfo: image.buildInfo,
            ociRef: oci?.ref ?? null,
            ociDigest: oci?.manifestDigest ?? null,
            ociLayerDigest: oci?.layerDigest ?? null,
            ociProvenanceDigest: oci?.provenanceDigest ?? null,
            proxmox: proxmox ? { node: proxmox.node, vmid: proxmox.vmid, name: proxmox.name } : null,
            validation: {
                passed: image.validation.passed, checks: image.validation.checks.apply((c) => c.map((x) => `${x.status} ${x.id}`)), evidencePath: image.validation.evidencePath,
                // Which gates ran; a boot's accelerator, timings and checks (older state has neither: offline only).
                checksRan: image.validation.checksRan.apply((r) => r ?? ["offline"]),
                boot: image.validation.boot.apply((b) => (b ? {
                    accelerator: b.accelerator, sshReadySeconds: Math.round(b.sshReadySeconds), totalSeconds: Math.round(b.totalSeconds),
                    checks: b.checks.map((c) => `${c.passed ? "pass" : "fail"} ${c.id}`),
                } : null)),
            },
            proxmoxTemplates: proxmox?.kept ?? null,
        },
    };
}

/**
 * After every pass: the stack's GitHub release (one writer, publishing each tag once all its images are up), and
 * each image's release metadata, which names the published URLs. Returns every image's full output record.
 */
export function finishPublishing(published: Record<string, PublishedImage>, ctx: PublishContext): Record<string, Record<string, unknown>> {
    const { config } = ctx;
    const assets = Object.values(published).flatMap((p) => (p.releaseAsset ? [p.releaseAsset] : []));
    const release = config.release?.enabled && assets.length
        ? new GithubRelease("github-release", { apiUrl: config.release.apiUrl, owner: config.release.owner, repo: config.release.repo, token: ctx.githubToken, assets })
        : undefined;
    const out: Record<string, Record<string, unknown>> = {};
    for (const [name, p] of Object.entries(published)) {
        const urls = p.releaseAsset && release ? release.published(name) : undefined;
        const { image, oci, stored } = p;
        // releases/<version>.json, the changelog and tools.json describe the qcow2 a consumer boots.
        const metadata = config.release && image.format === "qcow2" && (urls || oci || stored)
            ? new ReleaseMetadata(`${name}-release-metadata`, {
                // As configured: the provider resolves it in the checkout it runs in (a runner's is new every run).
                dir: config.release.metadataDir ?? ".",
                source: config.release.manifestSource,
                primary: name === ctx.primaryImage,
                pkgManifestPath: image.pkgManifestPath,
                record: pulumi.output({
                    version: image.version, sha256: image.sha256, size: image.size, info: image.buildInfo,
                    assetUrl: urls?.assetUrl, sumUrl: urls?.sha256AssetUrl, releaseUrl: urls?.releaseUrl,
                    ociRef: oci?.ref, ociDigest: oci?.manifestDigest, layerDigest: oci?.layerDigest, storeUrl: stored?.url,
                }).apply((o) => {
                    const i = o.info;
                    const file = `${name}-${o.version}.qcow2`;
                    return {
                        image: name, version: o.version, tag: o.version,
                        qcow2: { name: file, sha256: o.sha256, size: o.size, assetUrl: o.assetUrl ?? null, storeUrl: o.storeUrl ?? null },
                        sha256Asset: o.sumUrl ? { name: `${file}.sha256`, url: o.sumUrl } : null,
                        releaseUrl: o.releaseUrl ?? null,
                        oci: o.ociRef && o.ociDigest && o.layerDigest ? { ref: o.ociRef, digest: o.ociDigest, layerDigest: o.layerDigest } : null,
                        base: { id: i.base?.id ?? "unknown", sha256: i.base?.sha256 ?? "unknown" },
                        gitCommit: i.git?.commit ?? "unknown", buildTime: i.buildTime ?? "unknown", buildKey: i.buildKey ?? image.buildKey,
                    };
                }),
            })
            : undefined;
        out[name] = {
            ...p.record,
            releaseUrl: urls?.releaseUrl ?? null,
            releaseAssetUrl: urls?.assetUrl ?? null,
            releaseSha256Url: urls?.sha256AssetUrl ?? null,
            toolsJson: metadata?.toolsJsonPath ?? null,
        };
    }
    return out;
}

/** A Proxmox template from a published image (built here, or reused from another stack). */
export function proxmoxTemplate(name: string, image: { version: pulumi.Input<string>; sha256: pulumi.Input<string>; buildInfo: pulumi.Input<RecordedBuildInfo>; url: pulumi.Input<string> | undefined },
    ctx: PublishContext, opts: pulumi.ComponentResourceOptions): ProxmoxTemplate {
    const p = ctx.config.proxmox;
    if (!p || !ctx.proxmox) throw new Error("proxmoxTemplate needs factory:proxmox");
    if (!image.url) {
        throw new pulumi.RunError(`${name}: the Proxmox template needs a URL the node can download from: publish to the store ` +
            "(with factory:artifactStore.publicBaseUrl) or to a GitHub release (factory:proxmox.imageSource: release)");
    }
    return new ProxmoxTemplate(`${name}-proxmox`, {
        provider: ctx.proxmox.provider,
        api: { endpoint: p.endpoint, apiToken: ctx.proxmox.apiToken, insecure: p.insecure },
        node: p.node,
        imageStorage: p.imageStorage,
        diskStorage: p.diskStorage,
        bridge: p.bridge,
        namePattern: p.namePattern,
        keepLast: p.keepLast,
        vmids: { range: p.vmidRange, blocks: p.vmids, keepLast: p.keepLast },
        image: name,
        version: image.version,
        sha256: image.sha256,
        url: image.url,
        buildInfo: image.buildInfo,
        bootstrapUser: ctx.bootstrapUser,
        previous: ctx.proxmox.previous.apply((all) => all.filter((t) => t.image === name)),
        cluster: ctx.proxmox.cluster,
        access: ctx.proxmox.access,
    }, opts);
}
