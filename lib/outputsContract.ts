// The outputs contract (schemas/outputs.schema.json): checking a stack's outputs against it and turning them into
// the files Terraform (tfvars JSON) and Ansible (group vars) read. Both wrap the document in one variable,
// `image_factory`, so consumers address it the same way in HCL and Jinja.
import Ajv2020 from "ajv/dist/2020";
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "./atomic";

export const OUTPUTS_SCHEMA_FILE = path.join(__dirname, "..", "schemas", "outputs.schema.json");
export const CONSUMER_VARIABLE = "image_factory";

export interface ContractCheck {
    valid: boolean;
    /** One line per problem: `<json pointer> <message>`. */
    problems: string[];
}

let compiled: ((data: unknown) => boolean) & { errors?: Array<{ instancePath: string; message?: string; params?: unknown }> | null } | undefined;

export function checkOutputs(outputs: unknown): ContractCheck {
    if (!compiled) {
        const ajv = new Ajv2020({ allErrors: true, strict: false });
        compiled = ajv.compile(JSON.parse(fs.readFileSync(OUTPUTS_SCHEMA_FILE, "utf8")) as object);
    }
    const valid = compiled(outputs);
    const problems = valid ? [] : (compiled.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? "is invalid"} ${JSON.stringify(e.params ?? {})}`);
    return { valid, problems };
}

/** The bytes written for Terraform and Ansible: `{"image_factory": <outputs>}`, stable key order, final newline. */
export function consumerDocument(outputs: unknown): string {
    return `${JSON.stringify({ [CONSUMER_VARIABLE]: outputs }, null, 2)}\n`;
}

export interface ConsumerFiles {
    terraform: string;
    ansible: string;
}

export function consumerPaths(terraformDir: string, ansibleDir: string): ConsumerFiles {
    return {
        terraform: path.join(terraformDir, `${CONSUMER_VARIABLE}.auto.tfvars.json`),
        ansible: path.join(ansibleDir, "group_vars", "all", `${CONSUMER_VARIABLE}.json`),
    };
}

/** Refuses outputs that break the contract (a consumer would fail later and less clearly), then writes atomically. */
export async function writeConsumerFiles(outputs: unknown, files: ConsumerFiles): Promise<void> {
    const check = checkOutputs(outputs);
    if (!check.valid) {
        throw new Error(`the stack outputs do not match schemas/outputs.schema.json:\n  ${check.problems.join("\n  ")}\n` +
            "run `pulumi up` with this checkout (older outputs have another shape), or update the schema and bump schemaVersion");
    }
    const doc = consumerDocument(outputs);
    await writeFileAtomic(files.terraform, doc);
    await writeFileAtomic(files.ansible, doc);
}
