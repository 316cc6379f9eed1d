// image-factory: read and validate the stack config, build the resource graph per bootstrap pass, export the
// outputs contract. Everything else lives in components/ and lib/.
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import { ArtifactStore } from "./components/ArtifactStore";
import { ConfigError, parseConfig, readNamespace } from "./lib/config";

function loadConfig() {
    try {
        return parseConfig(readNamespace(pulumi.runtime.allConfig()));
    } catch (err) {
        // RunError prints just the message: the problems list is the whole story, a stack trace adds nothing.
        if (err instanceof ConfigError) throw new pulumi.RunError(err.message);
        throw err;
    }
}

const config = loadConfig();
const projectDir = process.cwd();
const resolve = (p: string) => path.resolve(projectDir, p);

const store = new ArtifactStore("artifacts", {
    root: resolve(config.artifactStore.root),
    baseUrl: config.artifactStore.publicBaseUrl ?? `http://${config.artifactStore.host}:${config.artifactStore.port}`,
});

export const schemaVersion = 1;
export const lab = config.lab;
export const artifactStore = { root: store.root, baseUrl: store.baseUrl, layout: store.layout };
