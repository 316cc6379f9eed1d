// Command-line options of the bin/ scripts, read with node's util.parseArgs in strict mode: an option a script does
// not know (a typo, a flag given a value) is an error that prints the script's usage, never silently ignored.
import { parseArgs } from "node:util";
import { UserError } from "./errors";

export interface CliSpec<V extends string, F extends string> {
    /** Options that take a value: `--name value` or `--name=value`. */
    values?: readonly V[];
    /** Options without a value: `--name`. */
    flags?: readonly F[];
    /** Whether bare arguments are allowed (else one is an error). */
    positionals?: boolean;
    usage: string;
}

export interface Cli<V extends string, F extends string> {
    value(name: V): string | undefined;
    flag(name: F): boolean;
    positionals: string[];
}

/** Parses `argv` (default: this process's arguments) against `spec`; throws a UserError with the usage on a mistake. */
export function parseCli<V extends string = never, F extends string = never>(spec: CliSpec<V, F>, argv: readonly string[] = process.argv.slice(2)): Cli<V, F> {
    const options: Record<string, { type: "string" | "boolean" }> = {};
    for (const v of spec.values ?? []) options[v] = { type: "string" };
    for (const f of spec.flags ?? []) options[f] = { type: "boolean" };
    let parsed: ReturnType<typeof parseArgs>;
    try {
        parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: spec.positionals ?? false });
    } catch (err) {
        throw new UserError(`${(err as Error).message}\nusage: ${spec.usage}`);
    }
    const values = parsed.values as Record<string, string | boolean | undefined>;
    return {
        value: (name) => values[name] as string | undefined,
        flag: (name) => values[name] === true,
        positionals: parsed.positionals,
    };
}
