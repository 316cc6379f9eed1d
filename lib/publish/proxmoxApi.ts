// The few Proxmox VE API calls our own code makes (the provider plugin makes the rest): check that the token can
// do what the factory needs, list a node's VMs, delete one and wait for its task. Authenticated with an API token
// (Authorization: PVEAPIToken=<user>@<realm>!<tokenid>=<secret>). Lab nodes often have self-signed certificates:
// `insecure` skips verification, as the provider's own flag does.
import * as http from "node:http";
import * as https from "node:https";
import { HttpStatusError } from "../errors";
import { sleep } from "../backoff";

export interface ProxmoxTarget {
    endpoint: string;
    apiToken: string;
    insecure: boolean;
}

/** Where the factory works on a node: the paths its privileges are checked on. */
export interface ProxmoxPlacement {
    node: string;
    imageStorage: string;
    diskStorage: string;
    bridge: string;
}

/** Privileges one ACL path must grant, why (the PVE code that checks them), and an alternative PVE accepts instead. */
export interface RequiredAcl {
    path: string;
    privileges: string[];
    why: string;
    or?: { path: string; privileges: string[] };
}

/**
 * What the calls the factory and the provider plugin make on a node need, path by path (read against PVE's source:
 * qemu-server src/PVE/API2/Qemu.pm, pve-storage src/PVE/API2/Storage/Status.pm and src/PVE/Storage.pm, pve-manager
 * PVE/API2/Nodes.pm). A token with privilege separation (PVE's default) needs them on its own ACL and its user's.
 */
export function requiredAcl(p: ProxmoxPlacement): RequiredAcl[] {
    const storages = new Map<string, { privileges: string[]; why: string[] }>();
    const add = (storage: string, privileges: string[], why: string) => {
        const e = storages.get(storage) ?? { privileges: [], why: [] };
        for (const priv of privileges) if (!e.privileges.includes(priv)) e.privileges.push(priv);
        e.why.push(why);
        storages.set(storage, e);
    };
    add(p.imageStorage, ["Datastore.AllocateTemplate", "Datastore.Audit", "Datastore.Allocate"],
        "download-url writes the image (Status.pm download_url); import-from reads it (Storage.pm check_volume_access); a new version " +
        "replaces the last one's download, and deleting a file no VM owns needs Datastore.Allocate (Storage/Content.pm delete)");
    add(p.diskStorage, ["Datastore.AllocateSpace", "Datastore.Audit"], "the template's disk and cloud-init drive, and growing the disk (Qemu.pm " +
        "check_storage_access, resize_vm); the provider reads the disk back (Storage/Content.pm info: check_volume_access)");
    return [
        {
            path: `/nodes/${p.node}`, privileges: ["Sys.AccessNetwork"], or: { path: "/", privileges: ["Sys.Audit", "Sys.Modify"] },
            why: "download-url and query-url-metadata fetch through the node's network (Status.pm download_url, Nodes.pm query_url_metadata)",
        },
        ...[...storages].map(([storage, e]) => ({ path: `/storage/${storage}`, privileges: e.privileges, why: e.why.join("; ") })),
        {
            path: "/vms",
            privileges: ["VM.Allocate", "VM.Audit", "VM.Config.Disk", "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Config.CPU", "VM.Config.Memory",
                "VM.Config.Network", "VM.Config.Options", "VM.Config.HWType"],
            why: "create, template and delete templates (VM.Allocate), read them (VM.Audit), and every option the template sets " +
                "(Qemu.pm check_vm_modify_config_perm: scsihw, vga and a socket serial port are VM.Config.HWType)",
        },
        {
            path: `/sdn/zones/localnetwork/${p.bridge}`, privileges: ["SDN.Use"],
            why: "the template's NIC on the bridge (QemuServer.pm check_bridge_access, PVE 8)",
        },
    ];
}

/** The grants of a token that holds exactly what requiredAcl asks (the narrower network alternative). */
export function requiredGrants(p: ProxmoxPlacement): Array<[string, string[]]> {
    return requiredAcl(p).map((a) => [a.path, a.privileges]);
}

/** A failure of the Proxmox API, with its HTTP status when there is one. */
export function proxmoxApiError(message: string, status?: number): HttpStatusError {
    return new HttpStatusError(message, status);
}

/** "user@realm!tokenid=secret" -> the token's id (not secret) and its secret. */
const API_TOKEN = /^([^=\s]+@[^=\s!]+![^=\s]+)=(\S+)$/;

/** Whether a value has the shape of a Proxmox API token (user@realm!tokenid=secret), as splitApiToken reads it. */
export const isApiToken = (value: string): boolean => API_TOKEN.test(value);

export function splitApiToken(apiToken: string): { tokenId: string; secret: string } {
    const m = API_TOKEN.exec(apiToken);
    if (!m) {
        throw new Error("factory:proxmoxApiToken must be a Proxmox API token user@realm!tokenid=secret: " +
            "pulumi config set --secret factory:proxmoxApiToken … (or PROXMOX_VE_API_TOKEN)");
    }
    return { tokenId: m[1], secret: m[2] };
}

/** The API base of a node's endpoint (https://host:8006/ -> https://host:8006/api2/json). */
export function apiUrl(endpoint: string): string {
    return new URL("api2/json", endpoint.endsWith("/") ? endpoint : `${endpoint}/`).toString();
}

function call<T>(t: ProxmoxTarget, method: string, p: string): Promise<T> {
    const url = new URL(`${apiUrl(t.endpoint)}${p}`);
    const mod = url.protocol === "https:" ? https : http;
    return new Promise<T>((resolve, reject) => {
        const req = mod.request(url, { method, headers: { Authorization: `PVEAPIToken=${t.apiToken}` }, rejectUnauthorized: !t.insecure, timeout: 30_000 }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
                const body = Buffer.concat(chunks).toString();
                const status = res.statusCode ?? 0;
                if (status === 401) return reject(proxmoxApiError(`Proxmox API at ${t.endpoint} refused the token (401): set factory:proxmoxApiToken (pulumi config set --secret) to user@realm!tokenid=secret of a token that exists`, 401));
                if (status === 403) return reject(proxmoxApiError(`Proxmox API forbade ${method} ${p} (403): ${body.slice(0, 200)}; give the token of factory:proxmoxApiToken the privileges listed in README "Proxmox VE templates"`, 403));
                if (status < 200 || status >= 300) return reject(proxmoxApiError(`Proxmox API ${method} ${p}: HTTP ${status} ${body.slice(0, 300)}`, status));
                try {
                    resolve((JSON.parse(body) as { data: T }).data);
                } catch {
                    reject(proxmoxApiError(`Proxmox API ${method} ${p}: not JSON: ${body.slice(0, 200)}`, status));
                }
            });
        });
        req.on("timeout", () => req.destroy(new Error("no answer in 30 s")));
        req.on("error", (err) => reject(proxmoxApiError(`Proxmox API ${t.endpoint} unreachable: ${err.message}: check factory:proxmox.endpoint and that the node answers on it`)));
        req.end();
    });
}

/** The privileges the token lacks on the node for the factory's work (empty: all there), each with its path. */
export async function missingPrivileges(t: ProxmoxTarget, placement: ProxmoxPlacement): Promise<string[]> {
    // GET /access/permissions?path=P: the caller's effective privileges on P (a token's: its own intersected with
    // its user's). PVE answers them under P with inherited ones merged in; some answer per granting ancestor, so
    // every ancestor's entry counts.
    const held = async (p: string) => {
        const all = await call<Record<string, Record<string, number>>>(t, "GET", `/access/permissions?path=${encodeURIComponent(p)}`);
        const have = new Set<string>();
        for (const [at, privs] of Object.entries(all)) if (at === "/" || p === at || p.startsWith(`${at}/`)) for (const [k, v] of Object.entries(privs)) if (v) have.add(k);
        return have;
    };
    const missing: string[] = [];
    for (const need of requiredAcl(placement)) {
        const have = await held(need.path);
        const lacks = need.privileges.filter((priv) => !have.has(priv));
        if (lacks.length === 0) continue;
        if (need.or) {
            const alt = await held(need.or.path);
            if (need.or.privileges.every((priv) => alt.has(priv))) continue;
            missing.push(`${lacks.join(", ")} on ${need.path} (or ${need.or.privileges.join(" and ")} on ${need.or.path})`);
        } else {
            missing.push(`${lacks.join(", ")} on ${need.path}`);
        }
    }
    return missing;
}

/** The node's Proxmox VE version (GET /version): "8.4.1", and whether it imports disk images (8.4 on). */
export async function pveVersion(t: ProxmoxTarget): Promise<{ version: string; imports: boolean }> {
    const v = await call<{ version: string; release?: string }>(t, "GET", "/version");
    const [major, minor] = v.version.split(".").map(Number);
    return { version: v.version, imports: major > 8 || (major === 8 && minor >= 4) };
}

/** The content types a storage of the node takes (GET /nodes/{node}/storage: the storages the token may see). */
export async function storageContent(t: ProxmoxTarget, node: string, storage: string): Promise<string[] | undefined> {
    const all = await call<Array<{ storage: string; content?: string }>>(t, "GET", `/nodes/${encodeURIComponent(node)}/storage`);
    const s = all.find((x) => x.storage === storage);
    return s ? (s.content ?? "").split(",").map((c) => c.trim()).filter(Boolean) : undefined;
}

export function listNodes(t: ProxmoxTarget): Promise<Array<{ node: string; status?: string }>> {
    return call<Array<{ node: string; status?: string }>>(t, "GET", "/nodes");
}

export interface VmSummary {
    vmid: number;
    name?: string;
    template?: number;
    tags?: string;
}

export function listVms(t: ProxmoxTarget, node: string): Promise<VmSummary[]> {
    return call<VmSummary[]>(t, "GET", `/nodes/${encodeURIComponent(node)}/qemu`);
}

/** Waits for a task (UPID) to stop and returns its exit status: "OK", or the error Proxmox logged. */
export async function waitTask(t: ProxmoxTarget, node: string, upid: string, timeoutMs = 600_000, pollMs = 500): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const s = await call<{ status: string; exitstatus?: string }>(t, "GET", `/nodes/${encodeURIComponent(node)}/tasks/${encodeURIComponent(upid)}/status`);
        if (s.status === "stopped") return s.exitstatus ?? "unknown";
        if (Date.now() > deadline) throw proxmoxApiError(`Proxmox task ${upid} still running after ${Math.round(timeoutMs / 1000)} s`);
        await sleep(pollMs);
    }
}

/**
 * Deletes a VM and its disks, waiting for the task: Proxmox answers a DELETE with a task id at once, and the
 * task may still fail (a template whose base volume a linked clone uses cannot go).
 */
export async function deleteVm(t: ProxmoxTarget, node: string, vmid: number): Promise<void> {
    const upid = await call<string>(t, "DELETE", `/nodes/${encodeURIComponent(node)}/qemu/${vmid}?purge=1&destroy-unreferenced-disks=1`);
    const exit = await waitTask(t, node, upid);
    if (exit !== "OK") throw proxmoxApiError(`Proxmox did not delete VM ${vmid}: ${exit}`);
}
