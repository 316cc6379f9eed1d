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

/** What the factory does on a node and the privileges each needs (Proxmox VE API viewer, "Required permissions"). */
export const REQUIRED_PRIVILEGES: Record<string, string[]> = {
    "/": ["Sys.Audit", "Sys.Modify"], // download-url
    "/storage/{imageStorage}": ["Datastore.AllocateTemplate", "Datastore.Audit"],
    "/storage/{diskStorage}": ["Datastore.AllocateSpace"],
    "/vms": ["VM.Allocate", "VM.Audit", "VM.Config.Disk", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Config.Cloudinit"],
};

/** A failure of the Proxmox API, with its HTTP status when there is one. */
export function proxmoxApiError(message: string, status?: number): HttpStatusError {
    return new HttpStatusError(message, status);
}

/** "user@realm!tokenid=secret" -> the token's id (not secret) and its secret. */
export function splitApiToken(apiToken: string): { tokenId: string; secret: string } {
    const m = /^([^=\s]+@[^=\s!]+![^=\s]+)=(\S+)$/.exec(apiToken);
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

/** The privileges the token lacks for the factory's work on this node and its storages (empty: all there). */
export async function missingPrivileges(t: ProxmoxTarget, storages: { imageStorage: string; diskStorage: string }): Promise<string[]> {
    const missing: string[] = [];
    for (const [template, privileges] of Object.entries(REQUIRED_PRIVILEGES)) {
        const p = template.replace("{imageStorage}", storages.imageStorage).replace("{diskStorage}", storages.diskStorage);
        // GET /access/permissions?path=P: the privileges on P. Proxmox answers them under P, with inherited ones
        // merged in; some servers answer per granting ancestor instead, so every ancestor's entry counts.
        const held = await call<Record<string, Record<string, number>>>(t, "GET", `/access/permissions?path=${encodeURIComponent(p)}`);
        const have: Record<string, number> = {};
        for (const [at, privs] of Object.entries(held)) if (at === "/" || p === at || p.startsWith(`${at}/`)) Object.assign(have, privs);
        for (const priv of privileges) if (!have[priv]) missing.push(`${priv} on ${p}`);
    }
    return missing;
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
