// ProxmoxTemplate: a published qcow2 turned into a Proxmox VE VM template with @muhlba91/pulumi-proxmoxve (the
// maintained provider; "@pulumi/proxmoxve" does not exist on npm): a checksum-verified download onto the node's
// storage (content type import), then a VM that imports that disk, gets a cloud-init drive, a serial console,
// the qemu guest agent and virtio-scsi, and is marked a template. A new version creates a new template beside the
// old one (templates are retained when replaced, since clones may use them); the last keepLast are kept and older
// ones are retired by TemplateRetention.
import * as proxmoxve from "@muhlba91/pulumi-proxmoxve";
import * as pulumi from "@pulumi/pulumi";
import type { RecordedBuildInfo } from "../lib/contract";
import { allocateVmid, rotate, templateName, type ClusterVm, type TemplateRecord, type VmidPolicy } from "../lib/publish/vmids";
import { dynamicType } from "../providers/dynamic";
import { urnLabel } from "../providers/progress";
import { imageTag, TemplateRetention } from "../providers/templateRetention";

export interface ProxmoxTemplateArgs {
    provider: proxmoxve.Provider;
    /** For retiring old templates through the API (the provider does not list VMs by tag). */
    api: { endpoint: string; apiToken?: pulumi.Input<string>; insecure: boolean };
    node: string;
    imageStorage: string;
    diskStorage: string;
    bridge: string;
    namePattern: string;
    keepLast: number;
    vmids: VmidPolicy;
    image: string;
    version: pulumi.Input<string>;
    sha256: pulumi.Input<string>;
    /** Where the node downloads the qcow2 (a stable URL; Proxmox follows redirects, so a release asset's 302 is fine). */
    url: pulumi.Input<string>;
    buildInfo: pulumi.Input<RecordedBuildInfo>;
    bootstrapUser: { name: string; keys: string[] };
    /** Templates this stack kept on earlier runs (its own previous outputs). */
    previous: pulumi.Input<TemplateRecord[]>;
    /** The cluster's VMs: a new template's id is one none of them holds. */
    cluster?: pulumi.Input<ClusterVm[]>;
    /** The node's access check (ProxmoxAccess): nothing is downloaded before it passed. */
    access?: pulumi.Resource;
}

export function templateDescription(image: string, version: string, sha256: string, i: RecordedBuildInfo): string {
    return [
        `**${image} ${version}** — built by image-factory`,
        "",
        i.description ?? "",
        "",
        `- sha256: \`${sha256}\``,
        `- built: ${i.buildTime ?? "?"} from commit \`${i.git?.commit ?? "unknown"}\``,
        `- base: ${i.base?.id ?? "?"} (\`${(i.base?.sha256 ?? "?").slice(0, 16)}\`)`,
        `- build key: \`${i.buildKey ?? "?"}\``,
    ].join("\n");
}

export class ProxmoxTemplate extends pulumi.ComponentResource {
    readonly node: pulumi.Output<string>;
    readonly vmid: pulumi.Output<number>;
    readonly name: pulumi.Output<string>;
    readonly sha256: pulumi.Output<string>;
    readonly kept: pulumi.Output<TemplateRecord[]>;
    readonly retired: pulumi.Output<TemplateRecord[]>;

    constructor(name: string, args: ProxmoxTemplateArgs, opts?: pulumi.ComponentResourceOptions) {
        super("image-factory:proxmox:ProxmoxTemplate", name, {}, opts);
        const current = pulumi.all([args.version, args.sha256, args.previous, args.cluster ?? []]).apply(([version, sha256, previous, cluster]) => {
            const vmid = allocateVmid(args.image, version, previous, args.vmids, cluster);
            return { image: args.image, version, vmid, name: templateName(args.namePattern, args.image, version), sha256 } satisfies TemplateRecord;
        });
        const rotation = pulumi.all([current, args.previous]).apply(([c, previous]) => rotate(c, previous, args.keepLast));
        const child = { parent: this, provider: args.provider };

        const file = new proxmoxve.download.File(`${name}-image`, {
            nodeName: args.node,
            datastoreId: args.imageStorage,
            contentType: "import",
            url: args.url,
            fileName: pulumi.interpolate`${args.image}-${args.version}.qcow2`,
            checksum: args.sha256,
            checksumAlgorithm: "sha256",
            overwrite: false,
            // A node keeps downloading when the run that asked for it dies (power loss, Ctrl-C): the re-run then
            // finds the file under its name but not in its state. The name is image+version and the checksum is
            // verified, so replacing that file is safe; refusing it would leave the stack stuck.
            overwriteUnmanaged: true,
            uploadTimeout: 1800,
            verify: true,
        }, { ...child, dependsOn: args.access ? [args.access] : [] });

        const vm = new proxmoxve.VmLegacy(`${name}-template`, {
            nodeName: args.node,
            vmId: current.vmid,
            name: current.name,
            description: pulumi.all([args.version, args.sha256, args.buildInfo]).apply(([v, s, i]) => templateDescription(args.image, v, s, i)),
            tags: pulumi.all([args.version, args.sha256]).apply(([v, s]) => [imageTag(args.image), v.toLowerCase(), `sha-${s.slice(0, 12)}`]),
            template: true,
            started: false,
            onBoot: false,
            bios: "seabios",
            machine: "q35",
            operatingSystem: { type: "l26" },
            cpu: { type: "x86-64-v2-AES", cores: 2 },
            memory: { dedicated: 2048 },
            agent: { enabled: true, trim: true },
            scsiHardware: "virtio-scsi-single",
            disks: [{ interface: "scsi0", datastoreId: args.diskStorage, importFrom: file.id, iothread: true, discard: "on", ssd: true }],
            bootOrders: ["scsi0"],
            // The provider's default cdrom block is the host's physical drive (ide3 = cdrom, media=cdrom): a passthrough
            // nobody asked for, which PVE lets only tokens with Sys.Console on / create. An empty drive instead.
            cdrom: { fileId: "none" },
            serialDevices: [{ device: "socket" }],
            vga: { type: "serial0" },
            networkDevices: [{ bridge: args.bridge, model: "virtio" }],
            initialization: {
                datastoreId: args.diskStorage,
                interface: "ide2",
                type: "nocloud",
                userAccount: { username: args.bootstrapUser.name, keys: args.bootstrapUser.keys },
                ipConfigs: [{ ipv4: { address: "dhcp" } }],
            },
        }, {
            ...child,
            // A new version is a new template beside the old one: clones may run from the old one.
            retainOnDelete: true,
            deleteBeforeReplace: false,
            // The provider plans a disk's `speed` block from its schema default (all zero) but reads none back from
            // a disk without limits, so every run would propose an update; we set no limits on templates.
            ignoreChanges: ["disks[0].speed"],
        });

        const retention = new TemplateRetention(`${name}-retention`, {
            endpoint: args.api.endpoint,
            apiToken: args.api.apiToken ? pulumi.secret(args.api.apiToken) : undefined,
            insecure: args.api.insecure,
            node: args.node,
            image: args.image,
            retired: rotation.retired,
            logUrn: urnLabel(`${name}-retention`, dynamicType("TemplateRetention"), this),
        }, { parent: this, dependsOn: [vm] });

        this.node = pulumi.output(args.node);
        this.vmid = vm.vmId.apply((v) => v as number);
        this.name = current.name;
        this.sha256 = pulumi.output(args.sha256);
        // A retired template Proxmox would not delete (a linked clone uses it) stays in the records, so the next run
        // finds it among its previous templates and tries again.
        this.kept = pulumi.all([rotation.kept, rotation.retired, retention.keptInUse]).apply(([kept, retired, inUse]) =>
            [...kept, ...retired.filter((r) => inUse.some((k) => k.vmid === r.vmid))]);
        this.retired = pulumi.all([rotation.retired, retention.deleted]).apply(([r]) => r);
        this.registerOutputs({ node: this.node, vmid: this.vmid, name: this.name, sha256: this.sha256, kept: this.kept });
    }
}
