// A self-managed S3 state backend on loopback, as the labs keep theirs: versitygw (Apache-2.0, built from its Go
// module by tools/build.sh) serving a directory over the S3 API with one access key. The bucket is made through
// the S3 API itself (CreateBucket, SigV4-signed), as an operator's first-run step does with their S3 tool.
// PULUMI_BACKEND_URL follows the pinned engine's gocloud s3blob (AWS SDK v2): endpoint, path-style addressing,
// a region, disable_https for plain HTTP, and response_checksum_validation (below).
import { spawn, type ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "../../lib/validation/bootCheck";
import { REPO_ROOT } from "./setup";

export interface S3Backend {
    /** PULUMI_BACKEND_URL for this bucket. */
    url: string;
    /** The credentials, as the AWS SDK reads them from the environment. */
    env: Record<string, string>;
    endpoint: string;
    bucket: string;
    dir: string;
    stop(): Promise<void>;
}

const REGION = "us-east-1";

/** AWS Signature Version 4 for one request with an empty or given body (the one CreateBucket needs). */
export function signV4(o: { method: string; url: URL; accessKey: string; secretKey: string; region: string; body?: string; now?: Date }): Record<string, string> {
    const now = o.now ?? new Date();
    const amzDate = now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
    const day = amzDate.slice(0, 8);
    const payload = crypto.createHash("sha256").update(o.body ?? "").digest("hex");
    const headers: Record<string, string> = { host: o.url.host, "x-amz-content-sha256": payload, "x-amz-date": amzDate };
    const names = Object.keys(headers).sort();
    const canonical = [o.method, o.url.pathname, o.url.searchParams.toString(), ...names.map((n) => `${n}:${headers[n]}`), "", names.join(";"), payload].join("\n");
    const scope = `${day}/${o.region}/s3/aws4_request`;
    const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, crypto.createHash("sha256").update(canonical).digest("hex")].join("\n");
    const hmac = (key: crypto.BinaryLike, data: string) => crypto.createHmac("sha256", key).update(data).digest();
    const signingKey = hmac(hmac(hmac(hmac(`AWS4${o.secretKey}`, day), o.region), "s3"), "aws4_request");
    const signature = crypto.createHmac("sha256", signingKey).update(toSign).digest("hex");
    return { ...headers, authorization: `AWS4-HMAC-SHA256 Credential=${o.accessKey}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}` };
}

export async function startS3Backend(opts: { bucket?: string; dir?: string } = {}): Promise<S3Backend> {
    const bin = path.join(REPO_ROOT, ".tools", "bin", "versitygw");
    if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run bash scripts/setup.sh (tools/build.sh versitygw)`);
    const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), "if-s3-"));
    const bucket = opts.bucket ?? "image-factory-state";
    const accessKey = "rehearsal-access";
    const secretKey = crypto.randomBytes(16).toString("hex");
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    let log = "";
    // --sidecar keeps object metadata in files beside the data instead of extended attributes, which not every
    // file system a CI machine's /tmp is on offers.
    const meta = path.join(dir, ".meta");
    fs.mkdirSync(path.join(dir, "data"), { recursive: true });
    fs.mkdirSync(meta, { recursive: true });
    const child: ChildProcess = spawn(bin, ["--access", accessKey, "--secret", secretKey, "--region", REGION, "--port", `127.0.0.1:${port}`, "--quiet",
        "posix", "--sidecar", meta, path.join(dir, "data")], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.on("data", (d: Buffer) => { log += d.toString(); });
    child.stderr?.on("data", (d: Buffer) => { log += d.toString(); });
    const deadline = Date.now() + 20_000;
    for (;;) {
        if (child.exitCode !== null) throw new Error(`versitygw exited ${child.exitCode}: ${log}`);
        if (await fetch(`${endpoint}/`, { method: "HEAD" }).then(() => true, () => false)) break;
        if (Date.now() > deadline) {
            child.kill("SIGKILL");
            throw new Error(`versitygw did not answer at ${endpoint} within 20 s: ${log}`);
        }
        await new Promise((res) => setTimeout(res, 100));
    }
    const url = new URL(`${endpoint}/${bucket}`);
    const r = await fetch(url, { method: "PUT", headers: signV4({ method: "PUT", url, accessKey, secretKey, region: REGION }) });
    if (r.status !== 200) throw new Error(`CreateBucket ${bucket} answered HTTP ${r.status}: ${await r.text()}`);
    return {
        // response_checksum_validation=when_required: versitygw renames an object's data into place and writes its
        // checksum beside it afterwards, so a read racing a write (the stack's StackReference to itself reads the
        // checkpoint its own update is saving) got "checksum did not match: algorithm CRC64NVME" (rehearsal, issue 33).
        url: `s3://${bucket}?endpoint=${encodeURIComponent(`127.0.0.1:${port}`)}&disable_https=true&use_path_style=true&region=${REGION}&response_checksum_validation=when_required`,
        env: { AWS_ACCESS_KEY_ID: accessKey, AWS_SECRET_ACCESS_KEY: secretKey, AWS_REGION: REGION },
        endpoint, bucket, dir,
        async stop() {
            if (child.exitCode === null) {
                child.kill("SIGTERM");
                await new Promise((res) => child.once("exit", res));
            }
            if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}
