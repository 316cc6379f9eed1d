// Dynamic provider: the artifact store's root directory and marker. Thin shell over lib/store.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import { ensureStoreRoot, removeStoreRootIfEmpty, STORE_MARKER } from "../lib/publish/store";
import {changedKeys, dynamicResource } from "./dynamic";

export interface StoreRootInputs {
    root: string;
}

export interface StoreRootOutputs extends StoreRootInputs {
    schemaVersion: number;
    layout: string;
}

export const provider: pulumi.dynamic.ResourceProvider<StoreRootInputs, StoreRootOutputs> = {
    async check(_olds, news) {
        const failures = path.isAbsolute(news.root) ? [] : [{ property: "root", reason: `must be absolute, got ${news.root}` }];
        return { inputs: news, failures };
    },
    async create(inputs) {
        const marker = await ensureStoreRoot(inputs.root);
        return { id: inputs.root, outs: { root: inputs.root, ...marker } };
    },
    async diff(_id, olds, news) {
        const replaces = changedKeys({ ...olds }, { ...news }, ["root"]);
        // The marker may have been removed by hand: converge by re-creating it.
        const missing = !fs.existsSync(path.join(news.root, STORE_MARKER));
        return { changes: replaces.length > 0 || missing, replaces, deleteBeforeReplace: false };
    },
    async update(_id, _olds, news) {
        const marker = await ensureStoreRoot(news.root);
        return { outs: { root: news.root, ...marker } };
    },
    async read(id, props) {
        if (!props || !fs.existsSync(path.join(id, STORE_MARKER))) return { id: "", props: undefined };
        return { id, props };
    },
    async delete(_id, props) {
        await removeStoreRootIfEmpty(props.root);
    },
};

export const StoreRoot = dynamicResource("StoreRoot", provider, { outputs: ["schemaVersion", "layout"], shown: ["root"] });
export type StoreRoot = InstanceType<typeof StoreRoot>;
