// A real OCI registry on loopback for tests: Debian's docker-registry (distribution 2.8), optionally behind
// htpasswd auth, with its access log parsed to count the requests that write (PUT/POST/PATCH/DELETE).
import execa, { type ExecaChildProcess } from "execa";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "./vm";

export interface TestRegistry {
    host: string;
    dir: string;
    /** Requests seen so far, e.g. { GET: 3, HEAD: 2, PUT: 1 }. */
    requests(): Record<string, number>;
    writes(): number;
    stop(): Promise<void>;
}

export async function startRegistry(opts: { auth?: { user: string; password: string } } = {}): Promise<TestRegistry> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-registry-"));
    const port = await freePort();
    const log = path.join(dir, "registry.log");
    let auth = "";
    if (opts.auth) {
        const { stdout } = await execa("htpasswd", ["-Bbn", opts.auth.user, opts.auth.password]);
        fs.writeFileSync(path.join(dir, "htpasswd"), `${stdout.trim()}\n`);
        auth = `auth:\n  htpasswd:\n    realm: test\n    path: ${path.join(dir, "htpasswd")}\n`;
    }
    fs.writeFileSync(path.join(dir, "config.yml"), `version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${path.join(dir, "data")}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
${auth}`);
    const bin = fs.existsSync("/usr/bin/docker-registry") ? "/usr/bin/docker-registry" : "docker-registry";
    const out = fs.openSync(log, "a");
    const child: ExecaChildProcess = execa(bin, ["serve", path.join(dir, "config.yml")], { stdout: out, stderr: out, reject: false });
    for (let i = 0; i < 100; i++) {
        const up = await new Promise<boolean>((resolve) => {
            http.get(`http://127.0.0.1:${port}/v2/`, (res) => {
                res.resume();
                resolve((res.statusCode ?? 500) < 500);
            }).on("error", () => resolve(false));
        });
        if (up) break;
        await new Promise((r) => setTimeout(r, 100));
    }
    const requests = () => {
        const counts: Record<string, number> = {};
        const text = fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "";
        for (const m of text.matchAll(/"(GET|HEAD|PUT|POST|PATCH|DELETE) \/v2\/[^"]*" (\d{3})/g)) counts[m[1]] = (counts[m[1]] ?? 0) + 1;
        return counts;
    };
    return {
        host: `127.0.0.1:${port}`,
        dir,
        requests,
        writes: () => {
            const c = requests();
            return (c.PUT ?? 0) + (c.POST ?? 0) + (c.PATCH ?? 0) + (c.DELETE ?? 0);
        },
        async stop() {
            child.kill("SIGTERM");
            await child;
            fs.closeSync(out);
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}
