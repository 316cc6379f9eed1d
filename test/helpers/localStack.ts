// The `local` stack in a throwaway project copy, wired to a per-test artifact store and HTTP server, and to a
// build work directory shared by the whole test run: the first test that needs an image really builds it
// (package downloads are cached in CACHE_ROOT/packages, outside the checkout), later tests reuse it by build key, as `pulumi up` would.
// Set IMAGE_FACTORY_TEST_KEEP_BUILDS=1 to keep builds between runs while iterating.
import * as fs from "node:fs";
import type * as http from "node:http";
import * as path from "node:path";
import { createArtifactServer } from "../../lib/publish/artifactServer";
import { TestProject } from "./project";
import { CACHE_ROOT, REPO_ROOT, TEST_DIR } from "./setup";

export const TEST_WORK_DIR = path.join(TEST_DIR, "test-work");
export const LOCAL_KEY = path.join(REPO_ROOT, ".cache", "local-ssh", "id_ed25519");
let prepared = false;

/** The run's build work dir: fresh builds once per test run, with the package caches shared across runs. */
export function testWorkDir(): string {
    if (!prepared) {
        if (!process.env.IMAGE_FACTORY_TEST_KEEP_BUILDS) fs.rmSync(path.join(TEST_WORK_DIR, "builds"), { recursive: true, force: true });
        fs.mkdirSync(TEST_WORK_DIR, { recursive: true });
        const cache = path.join(CACHE_ROOT, "packages");
        fs.mkdirSync(cache, { recursive: true });
        const link = path.join(TEST_WORK_DIR, "cache");
        if (!fs.existsSync(link)) fs.symlinkSync(cache, link);
        prepared = true;
    }
    return TEST_WORK_DIR;
}

export interface LocalStack {
    project: TestProject;
    storeRoot: string;
    baseUrl: string;
    server: http.Server;
    close(): Promise<void>;
}

/**
 * storeRoot: where the store lives (default: in the project copy), e.g. on another file system than the builds.
 * from: the program to copy (default: this checkout), e.g. an older commit's tree for an upgrade test.
 * boot: the boot gate (on in the stacks) is off unless a test asks: a TCG boot costs a minute or more, and the tests
 * about the gate itself (qcow2Image, validationGate) and the rehearsal boot what they need.
 */
export async function localStack(opts: { stack?: string; config?: Array<[string, string]>; env?: Record<string, string>; storeRoot?: string; boot?: boolean; from?: string } = {}): Promise<LocalStack> {
    const stack = opts.stack ?? "local";
    const project = TestProject.create({ env: opts.env, from: opts.from });
    const storeRoot = opts.storeRoot ?? path.join(project.dir, "artifacts");
    fs.mkdirSync(storeRoot, { recursive: true });
    const server = createArtifactServer({ root: storeRoot });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const baseUrl = `http://127.0.0.1:${port}`;
    await project.initStack(stack);
    await project.setConfig(stack, "factory:workDir", testWorkDir());
    await project.setConfig(stack, "factory:artifactStore", JSON.stringify({ root: storeRoot, port }));
    await project.setConfig(stack, "factory:bootstrapUser", JSON.stringify({ name: "ansible", sshAuthorizedKeyFiles: [`${LOCAL_KEY}.pub`] }));
    // Publishing targets are opt-in per test: Pulumi.local.yaml points OCI at the services' registry, which tests do not run.
    if (!(opts.config ?? []).some(([k]) => k.startsWith("factory:oci"))) await project.pulumi(["config", "rm", "factory:oci", "--stack", stack]);
    if (!opts.boot) await project.setConfig(stack, "factory:validation", JSON.stringify({ boot: false }));
    for (const [k, v] of opts.config ?? []) await project.setConfig(stack, k, v, { path: k.includes(".") || k.includes("[") });
    return {
        project,
        storeRoot,
        baseUrl,
        server,
        async close() {
            await new Promise<void>((resolve) => server.close(() => resolve()));
            project.remove();
        },
    };
}
