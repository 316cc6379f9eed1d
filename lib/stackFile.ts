// A stack's config as the engine would give it, read from the files without the engine: the project's defaults
// (Pulumi.yaml `value`s) overlaid with the stack file (Pulumi.<stack>.yaml, or a run's copy of it outside the
// checkout). Secure values are skipped: building and checking need none. For the Makefile's build targets and
// `make lab.check`, which run before (or without) `pulumi up`.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { parseConfig, readNamespace, type FactoryConfig } from "./config";

export function stackConfig(stack: string, dir: string, file = path.join(dir, `Pulumi.${stack}.yaml`), opts: Parameters<typeof parseConfig>[2] = {}): FactoryConfig {
    const project = parseYaml(fs.readFileSync(path.join(dir, "Pulumi.yaml"), "utf8")) as { config?: Record<string, { value?: unknown } | unknown> };
    if (!fs.existsSync(file)) throw new Error(`no stack file ${path.relative(process.cwd(), file)}: STACK must name one of ${fs.readdirSync(dir).filter((f) => /^Pulumi\..+\.yaml$/.test(f)).map((f) => f.slice(7, -5)).join(", ")}`);
    const stackFile = parseYaml(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> };
    // As the engine hands config to the program: every value a string (`pulumi config set` writes `"1"` for 1), decoded
    // the one way the program decodes it (readNamespace).
    const text = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));
    const all: Record<string, string> = {};
    for (const [k, v] of Object.entries(project.config ?? {})) {
        if (v && typeof v === "object" && "value" in v) all[k] = text((v as { value: unknown }).value);
    }
    for (const [k, v] of Object.entries(stackFile.config ?? {})) {
        if (!(v && typeof v === "object" && "secure" in v)) all[k] = text(v);
    }
    return parseConfig(readNamespace(all), process.env, opts);
}
