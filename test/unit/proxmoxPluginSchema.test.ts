// The plugin and the SDK fit: every input the program sends to a proxmoxve resource (and to the provider) exists
// in the schema of the plugin we build (tools/pulumi-resource-proxmoxve, read with `pulumi package get-schema`),
// under the same name and with the same type, and the plugin reports the version the npm SDK pins.
import { strict as assert } from "node:assert";
import execa from "execa";
import * as path from "node:path";
import { runProgram, stackConfig } from "../helpers/mockProgram";
import { REPO_ROOT } from "../helpers/setup";

interface SchemaType { type?: string; $ref?: string; items?: SchemaType; additionalProperties?: SchemaType; properties?: Record<string, SchemaType> }
interface PackageSchema {
    name: string;
    version?: string;
    config: { variables: Record<string, SchemaType> };
    provider: { inputProperties: Record<string, SchemaType> };
    resources: Record<string, { inputProperties: Record<string, SchemaType> }>;
    types: Record<string, { properties: Record<string, SchemaType> }>;
}

const PLUGIN = path.join(REPO_ROOT, ".tools", "plugins", "pulumi-resource-proxmoxve");

/** Problems of one value against a schema type: missing properties and type mismatches, with their paths. */
function check(schema: PackageSchema, t: SchemaType, value: unknown, at: string): string[] {
    if (value === undefined || value === null) return [];
    if (t.$ref) {
        const ref = decodeURIComponent(t.$ref.replace(/^#\/types\//, ""));
        if (t.$ref.startsWith("pulumi.json#/")) return []; // Any, Archive, Asset
        const obj = schema.types[ref];
        if (!obj) return [`${at}: schema type ${ref} missing`];
        if (typeof value !== "object" || Array.isArray(value)) return [`${at}: object expected, got ${JSON.stringify(value)}`];
        return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) =>
            obj.properties[k] ? check(schema, obj.properties[k], v, `${at}.${k}`) : [`${at}.${k}: no such property in ${ref}`]);
    }
    switch (t.type) {
        case "string": return typeof value === "string" ? [] : [`${at}: string expected, got ${JSON.stringify(value)}`];
        case "integer": return Number.isInteger(value) ? [] : [`${at}: integer expected, got ${JSON.stringify(value)}`];
        case "number": return typeof value === "number" ? [] : [`${at}: number expected, got ${JSON.stringify(value)}`];
        case "boolean": return typeof value === "boolean" ? [] : [`${at}: boolean expected, got ${JSON.stringify(value)}`];
        case "array": return Array.isArray(value) ? value.flatMap((v, i) => check(schema, t.items!, v, `${at}[${i}]`)) : [`${at}: array expected`];
        case "object": return typeof value === "object" ? Object.entries(value as object).flatMap(([k, v]) => check(schema, t.additionalProperties ?? {}, v, `${at}.${k}`)) : [`${at}: map expected`];
        default: return [];
    }
}

describe("proxmoxve plugin schema fits what the program sends", function () {
    this.timeout(120_000);
    let schema: PackageSchema;

    before(async () => {
        const r = await execa("pulumi", ["package", "get-schema", PLUGIN], { reject: false });
        assert.equal(r.exitCode, 0, `pulumi package get-schema failed (run bash scripts/setup.sh to build the plugin): ${r.stderr}`);
        schema = JSON.parse(r.stdout) as PackageSchema;
    });

    it("reports the version the npm SDK requires, with the tokens the program and the policy pack use", async () => {
        const sdk = require("@muhlba91/pulumi-proxmoxve/package.json") as { pulumi: { name: string; version: string } };
        const info = await execa("pulumi", ["plugin", "ls", "--json"], { reject: false });
        const plugins = JSON.parse(info.stdout || "[]") as Array<{ name: string; kind: string; version: string }>;
        assert.ok(plugins.some((p) => p.name === "proxmoxve" && p.kind === "resource" && p.version === sdk.pulumi.version),
            `resource-proxmoxve v${sdk.pulumi.version} is not installed in PULUMI_HOME: ${info.stdout}`);
        assert.equal(schema.name, sdk.pulumi.name);
        for (const tok of ["proxmoxve:download/file:File", "proxmoxve:index/vmLegacy:VmLegacy"]) assert.ok(schema.resources[tok], `${tok} not in the plugin`);
        assert.ok(schema.config.variables.apiToken && schema.config.variables.endpoint && schema.config.variables.insecure);
    });

    const SECRET_SIG = "4dabf18193072939515e22adb298388d"; // how the SDK marks a secret value on the wire
    const unwrap = (v: unknown): unknown => (v && typeof v === "object" && SECRET_SIG in v ? (v as unknown as { value: unknown }).value : v);
    /** A provider's inputs reach the engine JSON-encoded when they are not strings, as the SDK sends them. */
    const providerValue = (v: unknown): unknown => {
        if (typeof v !== "string") return v;
        try { return JSON.parse(v); } catch { return v; }
    };
    const runs: Record<string, Awaited<ReturnType<typeof runProgram>>> = {};

    for (const stack of ["dvnt", "dvntm"]) {
        it(`every input of ${stack}'s Proxmox resources and provider exists in the plugin schema with its type`, async () => {
            const dvntImages = { images: (runs.dvnt?.outputs.images ?? {}) as Record<string, unknown> };
            const run = runs[stack] = await runProgram(stack, { ...stackConfig(stack), "factory:proxmoxApiToken": "root@pam!ci=secret" },
                { stacks: { "organization/image-factory/dvnt": dvntImages } });
            const proxmox = run.resources.filter((r) => r.type.startsWith("proxmoxve:") || r.type === "pulumi:providers:proxmoxve");
            assert.ok(proxmox.some((r) => r.type === "proxmoxve:download/file:File"), `no download.File in ${stack}`);
            const problems: string[] = [];
            let checked = 0;
            for (const r of proxmox) {
                const props = r.type === "pulumi:providers:proxmoxve" ? schema.provider.inputProperties : schema.resources[r.type]?.inputProperties;
                if (!props) { problems.push(`${r.type}: not in the plugin schema`); continue; }
                for (const [k, raw] of Object.entries(r.inputs)) {
                    checked++;
                    const v = r.type === "pulumi:providers:proxmoxve" ? providerValue(unwrap(raw)) : unwrap(raw);
                    problems.push(...(props[k] ? check(schema, props[k], v, `${r.type} ${r.name}.${k}`) : [`${r.type} ${r.name}.${k}: no such input`]));
                }
            }
            assert.deepEqual(problems, []);
            assert.ok(checked > 30, `only ${checked} inputs checked`);
        });
    }

    it("the check itself finds a misspelt or mistyped input", () => {
        const props = schema.resources["proxmoxve:download/file:File"].inputProperties;
        assert.deepEqual(check(schema, props.uploadTimeout, "1800", "x"), ['x: integer expected, got "1800"']);
        const vm = schema.resources["proxmoxve:index/vmLegacy:VmLegacy"].inputProperties;
        assert.deepEqual(check(schema, vm.disks, [{ interface: "scsi0", importFrom: "a", iothreads: true }], "d"), ["d[0].iothreads: no such property in proxmoxve:index/VmLegacyDisk:VmLegacyDisk"]);
    });
});
