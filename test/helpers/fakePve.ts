// A Proxmox VE API on loopback for a test: fakepve through our launcher (test/fakepve/launch.py), on a free port
// with TLS (self-signed) and one API token. The token reaches the launcher through its environment, never argv.
import execa from "execa";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { requiredGrants, type ProxmoxPlacement } from "../../lib/publish/proxmoxApi";
import { REPO_ROOT } from "./setup";

export interface FakePveDownload { url: string; storage: string; content: string; filename: string; bytes: number; sha256: string | null; result: string }

export interface FakePve {
    url: string;
    /** user@realm!tokenid=secret */
    token: string;
    /** GET/POST/DELETE under /api2/json as the test's own root@pam!admin token (not the factory's): resolves `data`. */
    api<T = unknown>(method: string, p: string, form?: Record<string, string | number>): Promise<T>;
    /** Waits for a task and returns its exit status ("OK" or the error). */
    waitTask(upid: string): Promise<string>;
    downloads(): Promise<FakePveDownload[]>;
    /** Where a volume's bytes are on the node (an imported disk): a file and its format, or null when it has none. */
    volume(volid: string): Promise<{ file: string | null; format: string; size: number }>;
    /** [method, path, body] of every request received (secrets redacted by fakepve). */
    requests(): Promise<Array<[string, string, string]>>;
    close(): Promise<void>;
}

export const FAKEPVE_PYTHON = path.join(REPO_ROOT, ".tools", "fakepve", "bin", "python");

export interface FakePveOptions {
    /**
     * The token the factory gets (`token`): by default factory@pve!ci, privilege-separated, holding exactly what the
     * README's table asks on this node (requiredGrants of `placement`), token and user alike; `root: true` makes it
     * root@pam!ci with every privilege; `grants` gives it other ones.
     */
    token?: string;
    root?: boolean;
    grants?: Array<[string, string[]]>;
    /** Where the factory works on this node (default local, local-lvm, vmbr0): the least-privilege token's paths. */
    placement?: Partial<Omit<ProxmoxPlacement, "node">>;
    /** More users' tokens: privsep (default true), the token's grants and its user's (default the same). */
    identities?: Array<{ token: string; grants: Array<[string, string[]]>; privsep?: boolean; userGrants?: Array<[string, string[]]> }>;
    /** The one node's name (default pve1) and zfspool storages to add (dvntm's local-zfs). */
    node?: string;
    zfsStorages?: string[];
    /** Storages whose content the lab operator extended with import (default ["local"]; [] as PVE ships). */
    importStorages?: string[];
    pveVersion?: "8.3" | "8.4" | "9.0";
    /** Seconds each task runs after its UPID is returned (0: done before). */
    taskSeconds?: number;
    /** Task type → message: the first task of the type fails after running. */
    failTasks?: Record<string, string>;
}

/** The test's own token (root@pam!admin, every privilege): what a test inspects or sets up outside the factory. */
const ADMIN_TOKEN = "root@pam!admin=" + "fakepve-admin-secret-0123456789";

export async function startFakePve(opts: FakePveOptions = {}): Promise<FakePve> {
    if (!fs.existsSync(FAKEPVE_PYTHON)) throw new Error("fakepve is not installed: run bash scripts/setup.sh");
    const node = opts.node ?? "pve1";
    const placement: ProxmoxPlacement = { node, imageStorage: "local", diskStorage: "local-lvm", bridge: "vmbr0", ...opts.placement };
    const token = opts.token ?? (opts.root ? "root@pam!ci=" : "factory@pve!ci=") + "fakepve-test-secret-0123456789";
    const grants = opts.grants ?? (token.startsWith("root@pam!") ? null : requiredGrants(placement));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "if-fakepve-"));
    const ready = path.join(dir, "ready.json");
    const child = execa(FAKEPVE_PYTHON, [path.join(REPO_ROOT, "test", "fakepve", "launch.py"), "--host", "127.0.0.1", "--port", "0",
        "--ready-file", ready, "--data-dir", path.join(dir, "data"), "--node", node, "--pve-version", opts.pveVersion ?? "9.0",
        ...(opts.zfsStorages ?? []).flatMap((z) => ["--zfs-storage", z]),
        ...(opts.importStorages ?? ["local"]).flatMap((s) => ["--import-storage", s]),
        ...(opts.taskSeconds ? ["--task-seconds", String(opts.taskSeconds)] : []),
        ...Object.entries(opts.failTasks ?? {}).flatMap(([t, m]) => ["--fail-task", `${t}:${m}`])], {
        env: {
            FAKEPVE_TOKEN: token, FAKEPVE_TOKEN_GRANTS: JSON.stringify(grants),
            FAKEPVE_IDENTITIES: JSON.stringify([{ token: ADMIN_TOKEN, grants: [["/", ["*"]]] }, ...(opts.identities ?? [])]),
        },
        reject: false, all: true,
    });
    const deadline = Date.now() + 20_000;
    while (!fs.existsSync(ready)) {
        if (child.exitCode !== null || Date.now() > deadline) {
            child.kill();
            throw new Error(`fakepve did not start: ${(await child).all ?? ""}`);
        }
        await new Promise((r) => setTimeout(r, 100));
    }
    const info = JSON.parse(fs.readFileSync(ready, "utf8")) as { url: string };

    const request = <T>(method: string, p: string, form?: Record<string, string | number>): Promise<T> => new Promise((resolve, reject) => {
        const body = form ? new URLSearchParams(Object.fromEntries(Object.entries(form).map(([k, v]) => [k, String(v)]))).toString() : undefined;
        const req = https.request(new URL(p, info.url), {
            method, rejectUnauthorized: false,
            headers: { Authorization: `PVEAPIToken=${ADMIN_TOKEN}`, ...(body ? { "content-type": "application/x-www-form-urlencoded", "content-length": Buffer.byteLength(body) } : {}) },
        }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
                const text = Buffer.concat(chunks).toString();
                if ((res.statusCode ?? 0) >= 300) return reject(Object.assign(new Error(`${method} ${p}: ${res.statusCode} ${text}`), { status: res.statusCode }));
                resolve((JSON.parse(text) as { data: T }).data);
            });
        });
        req.on("error", reject);
        req.end(body);
    });
    const api = <T>(method: string, p: string, form?: Record<string, string | number>) => request<T>(method, `/api2/json${p}`, form);

    return {
        url: info.url,
        token,
        api,
        async waitTask(upid) {
            for (;;) {
                const s = await api<{ status: string; exitstatus?: string }>("GET", `/nodes/${opts.node ?? "pve1"}/tasks/${encodeURIComponent(upid)}/status`);
                if (s.status === "stopped") return s.exitstatus ?? "";
                await new Promise((r) => setTimeout(r, 100));
            }
        },
        downloads: () => request<FakePveDownload[]>("GET", "/_fake/downloads"),
        volume: (volid) => request<{ file: string | null; format: string; size: number }>("GET", `/_fake/volume?volid=${encodeURIComponent(volid)}`),
        requests: () => request<Array<[string, string, string]>>("GET", "/_fake/requests"),
        async close() {
            child.kill("SIGTERM");
            await child;
            fs.rmSync(dir, { recursive: true, force: true });
        },
    };
}
