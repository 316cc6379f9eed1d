// Command-line options of the bin/ scripts: `--name value` pairs, nothing more (the scripts are small and the
// Makefile passes every option by name).

/** The value after `--<name>` on the command line, or undefined when the option is absent. */
export function argValue(name: string, argv: readonly string[] = process.argv): string | undefined {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
}
