// A real OCI registry on loopback for tests: Debian's docker-registry (distribution 2.8), optionally behind
// htpasswd auth, with its access log parsed to count the requests that write (PUT/POST/PATCH/DELETE).
import execa, { type ExecaChildProcess } from "execa";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "../../lib/validation/bootCheck";

export interface TestRegistry {
    host: string;
    /** With tls: the run's CA and a bundle (system CAs + it) for SSL_CERT_FILE. */
    ca?: string;
    caBundle?: string;
    dir: string;
    /** Requests seen so far, e.g. { GET: 3, HEAD: 2, PUT: 1 }. */
    requests(): Record<string, number>;
    writes(): number;
    stop(): Promise<void>;
}

/**
 * A CA made for one run and a server certificate for 127.0.0.1 signed by it (openssl). `bundle` is the system's CA
 * bundle plus this CA: SSL_CERT_FILE for Go programs such as oras, NODE_EXTRA_CA_CERTS=ca for node.
 */
export async function makeTestCa(dir: string): Promise<{ ca: string; cert: string; key: string; bundle: string }> {
    const f = (n: string) => path.join(dir, n);
    await execa("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=image-factory rehearsal CA", "-keyout", f("ca.key"), "-out", f("ca.crt")]);
    await execa("openssl", ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", f("server.key"), "-out", f("server.csr")]);
    fs.writeFileSync(f("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
    await execa("openssl", ["x509", "-req", "-in", f("server.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2",
        "-extfile", f("server.ext"), "-out", f("server.crt")]);
    const system = ["/etc/ssl/certs/ca-certificates.crt"].find((p) => fs.existsSync(p));
    fs.writeFileSync(f("bundle.crt"), (system ? fs.readFileSync(system, "utf8") : "") + fs.readFileSync(f("ca.crt"), "utf8"));
    return { ca: f("ca.crt"), cert: f("server.crt"), key: f("server.key"), bundle: f("bundle.crt") };
}

export async function startRegistry(opts: { auth?: { user: string; password: string }; tls?: boolean } = {}): Promise<TestRegistry> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-registry-"));
    const port = await freePort();
    const log = path.join(dir, "registry.log");
    const tls = opts.tls ? await makeTestCa(dir) : undefined;
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
${tls ? `  tls:\n    certificate: ${tls.cert}\n    key: ${tls.key}\n` : ""}${auth}`);
    const bin = fs.existsSync("/usr/bin/docker-registry") ? "/usr/bin/docker-registry" : "docker-registry";
    const out = fs.openSync(log, "a");
    const child: ExecaChildProcess = execa(bin, ["serve", path.join(dir, "config.yml")], { stdout: out, stderr: out, reject: false });
    for (let i = 0; i < 100; i++) {
        const up = await new Promise<boolean>((resolve) => {
            (tls ? https : http).get(`${tls ? "https" : "http"}://127.0.0.1:${port}/v2/`, { ...(tls ? { ca: fs.readFileSync(tls.ca) } : {}) }, (res) => {
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
        ca: tls?.ca,
        caBundle: tls?.bundle,
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
