// Artifact HTTP service of the builder node and the local stack: serves the artifact store read-only.
//   ts-node bin/artifact-server.ts --root .artifacts --host 127.0.0.1 --port 8089
//   ts-node bin/artifact-server.ts --stack dvnt      (the stack's factory:artifactStore root, host and port)
// Started by `make services-start` (scripts/services.sh); `make serve STACK=…` (deploy/image-factory-artifacts.service)
// on a host that is not the builder node (whose nginx serves the store).
import * as fs from "node:fs";
import * as path from "node:path";
import { createArtifactServer } from "../lib/publish/artifactServer";
import { parseCli } from "../lib/cli";
import { stackConfig } from "../lib/stackFile";

const options = (() => {
    try {
        return parseCli({ values: ["root", "host", "port", "stack"], usage: "artifact-server [--root .artifacts] [--host 127.0.0.1] [--port 8089] | --stack <stack>" });
    } catch (err) {
        console.error(`artifact-server: ${(err as Error).message}`);
        process.exit(2);
    }
})();
const projectDir = path.resolve(__dirname, "..");
const stackName = options.value("stack");
const store = stackName ? stackConfig(stackName, projectDir).artifactStore : undefined;
const fromStack = { root: store && path.resolve(projectDir, store.root), host: store?.host, port: store && String(store.port) };
const arg = (name: "root" | "host" | "port", fallback: string): string => options.value(name) || fromStack[name] || fallback;

const root = path.resolve(arg("root", ".artifacts"));
const host = arg("host", "127.0.0.1");
const port = Number(arg("port", "8089"));
if (!Number.isInteger(port) || port < 1 || port > 65535) {
    console.error(`artifact-server: --port must be 1-65535, got ${arg("port", "")}`);
    process.exit(2);
}
fs.mkdirSync(root, { recursive: true });
const server = createArtifactServer({ root, log: (line) => console.log(line) });
server.on("error", (err: NodeJS.ErrnoException) => {
    console.error(err.code === "EADDRINUSE" ? `artifact-server: ${host}:${port} is in use; stop the other server or pick --port` : `artifact-server: ${err.message}`);
    process.exit(1);
});
server.listen(port, host, () => console.log(`artifact-server: serving ${root} at http://${host}:${port}/`));
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => server.close(() => process.exit(0)));
