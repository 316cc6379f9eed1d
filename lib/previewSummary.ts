// The PR comment and step summary of a `pulumi preview --json --show-sames` (without --show-sames an unchanged
// resource is not in the JSON at all): per stack and image, whether it rebuilds (its build
// key), the version it would get, and which targets change. Digest-level on purpose: a PR comment past ~65,536
// characters fails or is cut badly (pulumi/actions#482, #1387), and resource diffs belong in the job's log.

/** The parts of `pulumi preview --json` read here (engine display/json.go: PreviewDigest). */
export interface PreviewDigest {
    steps?: Array<{
        op: string;
        urn: string;
        /** The properties whose change makes the step (the provider's diff). */
        diffReasons?: string[];
        replaceReasons?: string[];
        oldState?: { inputs?: Record<string, unknown>; outputs?: Record<string, unknown> };
        newState?: { inputs?: Record<string, unknown>; outputs?: Record<string, unknown> };
    }>;
    changeSummary?: Record<string, number>;
    diagnostics?: Array<{ message?: string; severity?: string; urn?: string }>;
}

export interface ImageLine {
    image: string;
    /** rebuilds: a new build key (or no build yet); unchanged: the build stays; reused: another stack's artifact. */
    build: "rebuilds" | "unchanged" | "reused" | "none";
    buildKey?: string;
    previousBuildKey?: string;
    version: string;
    /** What changes: a new version of the same bytes, and the targets (gate, store, oci, release, proxmox), in that order. */
    changes: string[];
}

const NO_CHANGE = new Set(["same", "read", "refresh"]);
const TARGET_OF: Array<[RegExp, string]> = [
    [/^validation$/, "gate"], [/^stored$/, "store"], [/^oci(-|$)/, "oci"], [/^release(-|$)/, "release"], [/^proxmox(-|$)/, "proxmox"],
];
const TARGET_ORDER = ["version", "gate", "store", "oci", "release", "proxmox", "reuse"];

/** The image and the part of it a resource name stands for (`<image>-oci-push` → oci), among known image names. */
export function partOf(resourceName: string, images: readonly string[]): { image: string; part: string } | undefined {
    const image = [...images].sort((a, b) => b.length - a.length).find((i) => resourceName.startsWith(`${i}-`));
    if (!image) return undefined;
    const rest = resourceName.slice(image.length + 1);
    if (rest === "build" || rest === "reused") return { image, part: rest };
    const target = TARGET_OF.find(([re]) => re.test(rest));
    return target ? { image, part: target[1] } : undefined;
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v ? v : undefined);

/**
 * One line per image of the stack. `version`: the version a new build gets (factory:version of the run, e.g. the
 * tag); without one, a new build gets the date version when it is built.
 */
export function summarizePreview(doc: PreviewDigest, images: readonly string[], version?: string): ImageLine[] {
    const lines = new Map<string, ImageLine>(images.map((i) => [i, { image: i, build: "none", version: "—", changes: [] }]));
    for (const step of doc.steps ?? []) {
        const name = step.urn.split("::").pop() ?? "";
        const at = partOf(name, images);
        if (!at) continue;
        const line = lines.get(at.image) as ImageLine;
        const changed = !NO_CHANGE.has(step.op);
        if (at.part === "build") {
            line.buildKey = str(step.newState?.inputs?.buildKey) ?? str(step.oldState?.inputs?.buildKey);
            const before = str(step.oldState?.inputs?.buildKey);
            if (before && before !== line.buildKey) line.previousBuildKey = before;
            const oldVersion = str(step.oldState?.outputs?.version);
            if (!changed) {
                line.build = "unchanged";
                line.version = oldVersion ?? "—";
            } else if (!before || before !== line.buildKey) {
                line.build = "rebuilds";
                line.version = version ?? "a new date version, given at up";
            } else {
                // The same bytes under another version (a new tag): republished, not rebuilt.
                line.build = "unchanged";
                line.version = version ?? oldVersion ?? "—";
                line.changes.push("version");
            }
        } else if (at.part === "reused") {
            line.build = "reused";
            line.version = str(step.newState?.outputs?.version) ?? str(step.oldState?.outputs?.version) ?? "from the other stack";
            if (changed) line.changes.push("reuse");
        } else if (changed && !line.changes.some((c) => c.split(" ")[0] === at.part)) {
            // The properties that changed, when the provider named them: "oci (tags)" says more than "oci".
            const why = [...new Set([...(step.replaceReasons ?? []), ...(step.diffReasons ?? [])])].slice(0, 3);
            line.changes.push(why.length ? `${at.part} (${why.join(", ")})` : at.part);
        }
    }
    const order = (c: string) => TARGET_ORDER.indexOf(c.split(" ")[0]);
    for (const l of lines.values()) l.changes.sort((a, b) => order(a) - order(b));
    return [...lines.values()];
}

const MAX_COMMENT_CHARS = 60_000;

/** The markdown a PR comment and a step summary show for one stack. */
export function previewMarkdown(stack: string, doc: PreviewDigest, lines: ImageLine[], opts: { ok: boolean; logHint?: string } = { ok: true }): string {
    const counts = Object.entries(doc.changeSummary ?? {}).filter(([, n]) => n > 0).map(([op, n]) => `${n} ${op}`).join(", ") || "no resources";
    const short = (k?: string) => (k ? `\`${k.slice(0, 12)}\`` : "");
    const row = (l: ImageLine) => {
        const build = l.build === "rebuilds" ? `**rebuilds** ${short(l.buildKey)}${l.previousBuildKey ? ` (was ${short(l.previousBuildKey)})` : ""}`
            : l.build === "unchanged" ? `unchanged ${short(l.buildKey)}` : l.build === "reused" ? "reused from another stack" : "not in this run";
        return `| ${l.image} | ${build} | ${l.version} | ${l.changes.length ? l.changes.join(", ") : "—"} |`;
    };
    const errors = (doc.diagnostics ?? []).filter((d) => d.severity === "error").map((d) => (d.message ?? "").trim().split("\n")[0]).filter(Boolean);
    const out = [
        `### \`pulumi preview\` of ${stack}: ${opts.ok ? counts : "**failed**"}`,
        "",
        "| image | build | version | changes |",
        "|---|---|---|---|",
        ...lines.map(row),
        ...(errors.length ? ["", "Errors:", ...errors.slice(0, 10).map((e) => `- ${e.slice(0, 300)}`)] : []),
        ...(opts.logHint ? ["", opts.logHint] : []),
        "",
    ].join("\n");
    return out.length > MAX_COMMENT_CHARS ? `${out.slice(0, MAX_COMMENT_CHARS)}\n\n(cut: the job's log has the whole preview)\n` : out;
}
