// The publishing targets of one image, wired from the stack config: artifact store, OCI, GitHub release, release
// metadata and Proxmox template, each after the validation gate. Not a component of its own: the resources hang
// under the image's Qcow2Image (or, for an image reused from another stack, under its pass).
import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { FactoryConfig } from "../lib/config";
import type { TemplateRecord } from "../lib/vmids";
import { ReleaseMetadata } from "../providers/releaseMetadata";
import type { ArtifactStore } from "./ArtifactStore";
import { GithubReleaseAsset } from "./GithubReleaseAsset";
import { OciArtifact } from "./OciArtifact";
import { ProxmoxTemplate } from "./ProxmoxTemplate";
import type { BuiltImage } from "./Qcow2Image";

export interface PublishContext {
    config: FactoryConfig;
    store: ArtifactStore;
    resolve: (p: string) => string;
    sourceUrl?: string;
    githubToken?: pulumi.Output<string>;
    ociCredentials?: { username?: string; password: pulumi.Output<string> };
    primaryImage?: string;
    proxmox?: { provider: proxmoxve.Provider; apiToken?: pulumi.Output<string>; previous: pulumi.Output<TemplateRecord[]>; access: pulumi.Resource };
    bootstrapUser: { name: string; keys: string[] };
}

export interface Targets {
    store: boolean;
    oci: boolean;
    release: boolean;
    proxmox: boolean;
}

export function publishBuiltImage(image: BuiltImage, targets: Targets, ctx: PublishContext): Record<string, unknown> & { proxmoxResource?: ProxmoxTemplate } {
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
        }, { parent: image, dependsOn: gate })
        : undefined;
    const release = config.release?.enabled && targets.release
        ? new GithubReleaseAsset(`${name}-release`, {
            apiUrl: config.release.apiUrl, owner: config.release.owner, repo: config.release.repo, token: ctx.githubToken,
            version: image.version, file: stored?.path ?? image.path, fileName: title, sha256: image.sha256, size: image.size,
            buildInfo: image.buildInfo, ociRef: oci?.ref, deleteOnDestroy: config.release.deleteOnDestroy,
        }, { parent: image, dependsOn: gate })
        : undefined;
    // releases/<version>.json, the changelog and tools.json describe the qcow2 a consumer boots.
    const metadata = config.release && image.format === "qcow2" && (release || oci || stored)
        ? new ReleaseMetadata(`${name}-release-metadata`, {
            dir: ctx.resolve(config.release.metadataDir ?? "."),
            source: config.release.manifestSource,
            primary: name === ctx.primaryImage,
            pkgManifestPath: image.pkgManifestPath,
            record: pulumi.output({
                version: image.version, sha256: image.sha256, size: image.size, info: image.buildInfo,
                assetUrl: release?.assetUrl, sumUrl: release?.sha256AssetUrl, releaseUrl: release?.releaseUrl,
                ociRef: oci?.ref, ociDigest: oci?.manifestDigest, layerDigest: oci?.layerDigest, storeUrl: stored?.url,
            }).apply((o) => {
                const i = o.info as { base?: { id?: string; sha256?: string }; git?: { commit?: string }; buildTime?: string; buildKey?: string };
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
        }, { parent: image })
        : undefined;
    const downloadUrl = config.proxmox?.imageSource === "release" ? release?.assetUrl : stored?.url;
    const proxmox = targets.proxmox && ctx.proxmox && image.format === "qcow2"
        ? proxmoxTemplate(name, { version: image.version, sha256: image.sha256, buildInfo: image.buildInfo, url: downloadUrl }, ctx, { parent: image, dependsOn: gate })
        : undefined;
    return {
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
        releaseUrl: release?.releaseUrl ?? null,
        releaseAssetUrl: release?.assetUrl ?? null,
        releaseSha256Url: release?.sha256AssetUrl ?? null,
        toolsJson: metadata?.toolsJsonPath ?? null,
        proxmox: proxmox ? { node: proxmox.node, vmid: proxmox.vmid, name: proxmox.name } : null,
        validation: { passed: image.validation.passed, checks: image.validation.checks.apply((c) => c.map((x) => `${x.status} ${x.id}`)), evidencePath: image.validation.evidencePath },
        proxmoxTemplates: proxmox?.kept ?? null,
        /** Not an output: the template resource, for images built on the node from it (Packer → Proxmox). */
        proxmoxResource: proxmox,
    };
}

/** A Proxmox template from a published image (built here, or reused from another stack). */
export function proxmoxTemplate(name: string, image: { version: pulumi.Input<string>; sha256: pulumi.Input<string>; buildInfo: pulumi.Input<Record<string, unknown>>; url: pulumi.Input<string> | undefined },
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
        access: ctx.proxmox.access,
    }, opts);
}
