// Markdown for a CI job's summary and the PR comment, from what pulumi printed as JSON on standard input:
//   pulumi preview --json … | ci-summary.ts preview --stack dvnt --config-file <run copy> [--version v2026.12.06] [--failed]
//   pulumi stack output images --json … | ci-summary.ts outputs --stack dvnt [--tag v2026.12.06]
import { parseCli } from "../lib/cli";
import { previewMarkdown, summarizePreview, type PreviewDigest } from "../lib/previewSummary";
import { stackConfig } from "../lib/stackFile";
import * as path from "node:path";

const root = path.join(__dirname, "..");

async function stdin(): Promise<string> {
    let s = "";
    for await (const chunk of process.stdin) s += String(chunk);
    return s;
}

async function main(): Promise<void> {
    const cli = parseCli<"stack" | "config-file" | "version" | "tag", "failed">({
        values: ["stack", "config-file", "version", "tag"], flags: ["failed"], positionals: true,
        usage: "ci-summary.ts preview|outputs --stack <stack> [--config-file f] [--version v] [--tag v] [--failed]",
    });
    const [mode] = cli.positionals;
    const stack = cli.value("stack") ?? "local";
    const text = await stdin();
    if (mode === "preview") {
        // A preview that failed may print no JSON at all: the table then says so, and the log has the rest.
        let doc: PreviewDigest = {};
        try {
            doc = JSON.parse(text) as PreviewDigest;
        } catch {
            doc = { diagnostics: [{ severity: "error", message: text.trim().split("\n").slice(-1)[0] ?? "no output" }] };
        }
        const config = stackConfig(stack, root, cli.value("config-file"));
        const images = config.images;
        process.stdout.write(previewMarkdown(stack, doc, summarizePreview(doc, images, cli.value("version") ?? config.version),
            { ok: !cli.flag("failed"), logHint: "Resource-level diffs: the job's log." }));
    } else if (mode === "outputs") {
        const images = JSON.parse(text || "{}") as Record<string, { version?: string; sha256?: string | null; derivedFrom?: string }>;
        const tag = cli.value("tag");
        process.stdout.write([
            `### image-factory ${stack}${tag ? ` ${tag}` : ""}`,
            "",
            "| image | version | sha256 |",
            "|---|---|---|",
            ...Object.entries(images).map(([k, v]) => `| ${k} | ${v.version ?? "—"} | ${v.sha256 ? `\`${v.sha256}\`` : "—"} |`),
            "",
        ].join("\n"));
    } else {
        throw new Error(`ci-summary.ts: the first argument is preview or outputs, got ${JSON.stringify(mode)}`);
    }
}

main().catch((err: Error) => {
    console.error(`ci-summary: ${err.message}`);
    process.exit(1);
});
