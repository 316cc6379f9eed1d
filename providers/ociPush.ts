// Dynamic provider: a qcow2 published as an OCI artifact (oras-compatible) under a version tag plus moving tags,
// with an in-toto provenance statement attached as a referrer.
// Unchanged inputs mean no call at all; a re-create against a registry that already holds the artifact uploads
// nothing; refresh notices a deleted or re-pointed tag; destroy keeps published tags unless deleteOnDestroy.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { linkOrCopy } from "../lib/atomic";
import { refusedCredentials } from "../lib/errors";
import { attach, deleteTag, fetchManifest, IN_TOTO_MEDIA_TYPE, pushArtifact, referrers, type OciTarget } from "../lib/publish/oci";
import {dynamicResource, keyedDiff } from "./dynamic";
import { engineReporter } from "./progress";

export interface OciPushInputs {
    registry: string;
    repository: string;
    tags: string[];
    file: string;
    /** File name in the registry (the layer's title); must end in .qcow2 for consumers to find it. */
    title: string;
    sha256: string;
    mediaType: string;
    artifactType: string;
    annotations: Record<string, string>;
    plainHttp: boolean;
    username?: string;
    /** Secret input; never part of the outputs. */
    password?: string;
    /** in-toto statement attached as a referrer, or null. */
    provenance: Record<string, unknown> | null;
    deleteOnDestroy: boolean;
    logUrn?: string;
}

export interface OciPushOutputs extends Omit<OciPushInputs, "password" | "file"> {
    ref: string;
    refs: string[];
    manifestDigest: string;
    layerDigest: string;
    size: number;
    provenanceDigest: string | null;
    uploaded: boolean;
}

const target = (i: { registry: string; repository: string; plainHttp: boolean; username?: string }, password?: string): OciTarget =>
    ({ registry: i.registry, repository: i.repository, plainHttp: i.plainHttp, username: i.username, password });

/** A temp hard link (or copy) named as the title, so oras records the right file name without touching the source. */
function named(file: string, title: string): { path: string; cleanup: () => void } {
    if (path.basename(file) === title) return { path: file, cleanup: () => undefined };
    const dir = fs.mkdtempSync(path.join(path.dirname(file), ".oci-"));
    const p = path.join(dir, title);
    linkOrCopy(file, p);
    return { path: p, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

async function publish(i: OciPushInputs): Promise<OciPushOutputs> {
    const report = engineReporter(i.logUrn);
    const t = target(i, i.password);
    const f = named(i.file, i.title);
    try {
        report(`→ ${i.registry}/${i.repository}: pushing ${i.title} as ${i.tags.join(", ")}…`);
        const r = await pushArtifact({ target: t, tags: i.tags, file: f.path, mediaType: i.mediaType, artifactType: i.artifactType, annotations: i.annotations, log: report }, i.sha256);
        report(r.uploaded ? `→ pushed ${r.layerDigest} (${r.size} bytes), manifest ${r.manifestDigest}` : `→ registry already holds ${r.manifestDigest}: nothing uploaded`);
        let provenanceDigest: string | null = null;
        if (i.provenance) {
            const existing = (await referrers(t, r.manifestDigest)).find((d) => d.artifactType === IN_TOTO_MEDIA_TYPE);
            if (existing) provenanceDigest = existing.digest;
            else {
                const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-prov-"));
                try {
                    const file = path.join(dir, "provenance.intoto.json");
                    fs.writeFileSync(file, `${JSON.stringify(i.provenance, null, 2)}\n`);
                    provenanceDigest = await attach(t, r.manifestDigest, file, IN_TOTO_MEDIA_TYPE, IN_TOTO_MEDIA_TYPE);
                    report(`→ attached provenance ${provenanceDigest}`);
                } finally {
                    fs.rmSync(dir, { recursive: true, force: true });
                }
            }
        }
        const { password: _password, file: _file, ...rest } = i;
        return {
            ...rest,
            ref: `oci://${i.registry}/${i.repository}:${i.tags[0]}`,
            refs: i.tags.map((tag) => `oci://${i.registry}/${i.repository}:${tag}`),
            manifestDigest: r.manifestDigest,
            layerDigest: r.layerDigest,
            size: r.size,
            provenanceDigest,
            uploaded: r.uploaded,
        };
    } finally {
        f.cleanup();
    }
}

const REPLACE_KEYS = ["registry", "repository", "sha256", "mediaType", "artifactType", "title", "annotations", "provenance"] as const;

export const provider: pulumi.dynamic.ResourceProvider<OciPushInputs, OciPushOutputs> = {
    async create(inputs) {
        const outs = await publish(inputs);
        return { id: `${inputs.registry}/${inputs.repository}@${outs.manifestDigest}`, outs };
    },
    async diff(_id, olds, news) {
        // After a refresh: what the registry holds under the version tag is not this image any more.
        const replaced = olds.layerDigest !== `sha256:${news.sha256}` ? ["sha256"] : [];
        // Not the user name: who pushes (the actor of a run, absent from a pull request's preview, which gets no
        // publishing token) changes nothing about the artifact.
        return keyedDiff(olds, news, { replace: REPLACE_KEYS, update: ["tags", "plainHttp", "deleteOnDestroy"] }, { replaces: replaced });
    },
    async update(_id, _olds, news) {
        return { outs: await publish(news) };
    },
    async read(id, props) {
        if (!props) return { id: "", props: undefined };
        // Refresh runs without the secret inputs, so it reads anonymously; a private registry then reports 401
        // and the recorded state is kept as it is.
        try {
            const got = await fetchManifest(target(props), props.tags[0]);
            if (!got) return { id: "", props: undefined }; // the version tag is gone
            const layer = got.manifest.layers.find((l) => l.mediaType === props.mediaType);
            return { id, props: { ...props, manifestDigest: got.digest, layerDigest: layer?.digest ?? "", size: layer?.size ?? 0 } };
        } catch (err) {
            if (refusedCredentials(err)) return { id, props };
            throw err;
        }
    },
    async delete(_id, props) {
        if (!props.deleteOnDestroy) return; // published artifacts outlive the stack unless configured otherwise
        const t = target(props, process.env.GHCR_TOKEN);
        for (const tag of props.tags) {
            // Only tags that still name this manifest: a moving tag may already point at a newer version.
            const got = await fetchManifest(t, tag);
            if (got?.digest === props.manifestDigest) await deleteTag(t, tag);
        }
    },
};

export const OciPush = dynamicResource("OciPush", provider, { outputs: ["ref", "refs", "manifestDigest", "layerDigest", "size", "provenanceDigest", "uploaded"] });
export type OciPush = InstanceType<typeof OciPush>;
