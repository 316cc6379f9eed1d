// The few Proxmox VE API calls the retention step needs (list a node's VMs, delete one), authenticated with an
// API token (Authorization: PVEAPIToken=<user>@<realm>!<tokenid>=<secret>). Lab nodes often have self-signed
// certificates: `insecure` skips verification, as the provider's own flag does.
import * as http from "node:http";
import * as https from "node:https";

export interface ProxmoxTarget {
    endpoint: string;
    apiToken: string;
    insecure: boolean;
}

function call<T>(t: ProxmoxTarget, method: string, p: string): Promise<T> {
    const url = new URL(`api2/json${p}`, t.endpoint.endsWith("/") ? t.endpoint : `${t.endpoint}/`);
    const mod = url.protocol === "https:" ? https : http;
    return new Promise<T>((resolve, reject) => {
        const req = mod.request(url, { method, headers: { Authorization: `PVEAPIToken=${t.apiToken}` }, rejectUnauthorized: !t.insecure }, (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
                const body = Buffer.concat(chunks).toString();
                const status = res.statusCode ?? 0;
                if (status === 401) return reject(new Error("Proxmox API refused the token (401): check factory:proxmoxApiToken (user@realm!tokenid=secret)"));
                if (status === 403) return reject(new Error(`Proxmox API forbade ${method} ${p} (403): the token needs VM.Allocate and VM.Audit on the node`));
                if (status < 200 || status >= 300) return reject(Object.assign(new Error(`Proxmox API ${method} ${p}: HTTP ${status} ${body.slice(0, 300)}`), { status }));
                try {
                    resolve((JSON.parse(body) as { data: T }).data);
                } catch {
                    reject(new Error(`Proxmox API ${method} ${p}: not JSON: ${body.slice(0, 200)}`));
                }
            });
        });
        req.on("error", (err) => reject(new Error(`Proxmox API ${t.endpoint} unreachable: ${err.message}`)));
        req.end();
    });
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

export function deleteVm(t: ProxmoxTarget, node: string, vmid: number): Promise<string> {
    return call<string>(t, "DELETE", `/nodes/${encodeURIComponent(node)}/qemu/${vmid}?purge=1&destroy-unreferenced-disks=1`);
}
