// Dynamic provider: a catalog base image made present in the local cache (lib/baseImages). Its spec hash is an
// input, so a changed catalog entry is a diff; refresh notices a cache that lost or damaged its files.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import { ensureImage, type ManagedImageSpec } from "../lib/baseImages/cache";
import { hashFile } from "../lib/sha256";
import {dynamicResource, keyedDiff } from "./dynamic";
import { engineReporter } from "./progress";

export interface BaseImageFetchInputs {
    spec: ManagedImageSpec;
    specHash: string;
    cacheRoot: string;
    mirror?: string;
    logUrn?: string;
}

export interface BaseImageFetchOutputs extends Omit<BaseImageFetchInputs, "spec"> {
    /** Catalog id ("id" itself is reserved for the resource's own id). */
    imageId: string;
    version: string;
    /** The disk the qemu profile boots (or the first artifact). */
    path: string;
    sha256: string;
    size: number;
    files: Record<string, { path: string; sha256: string; size: number }>;
}

async function ensure(i: BaseImageFetchInputs): Promise<BaseImageFetchOutputs> {
    const r = await ensureImage(i.spec, { cacheRoot: i.cacheRoot, mirror: i.mirror, progress: engineReporter(i.logUrn) });
    const primary = r.files[i.spec.qemu.disk.artifact] ?? Object.values(r.files)[0];
    const { spec: _spec, ...rest } = i;
    return JSON.parse(JSON.stringify({ ...rest, imageId: r.id, version: r.version, path: primary.path, sha256: primary.sha256, size: primary.size, files: r.files })) as BaseImageFetchOutputs;
}

export const provider: pulumi.dynamic.ResourceProvider<BaseImageFetchInputs, BaseImageFetchOutputs> = {
    async create(inputs) {
        const outs = await ensure(inputs);
        return { id: `${outs.imageId}@${outs.version}`, outs };
    },
    async diff(_id, olds, news) {
        // A cached file removed by hand: fetch it again.
        const missing = Object.values(olds.files ?? {}).some((f) => !fs.existsSync(f.path));
        return keyedDiff(olds, news, { replace: ["specHash", "cacheRoot"], update: ["mirror"] }, { changes: missing });
    },
    async update(_id, _olds, news) {
        return { outs: await ensure(news) };
    },
    async read(id, props) {
        if (!props) return { id: "", props: undefined };
        for (const f of Object.values(props.files ?? {})) {
            if (!fs.existsSync(f.path) || (await hashFile(f.path)).sha256 !== f.sha256) return { id: "", props: undefined };
        }
        return { id, props };
    },
    async delete() {
        // The cache is shared and keyed by id/version; other stacks and builds reuse it.
    },
};

export const BaseImageFetch = dynamicResource("BaseImageFetch", provider, { outputs: ["imageId", "path", "sha256", "size", "files", "version"] });
export type BaseImageFetch = InstanceType<typeof BaseImageFetch>;
