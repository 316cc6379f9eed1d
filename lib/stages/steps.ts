// A builder is a flat list of named steps over one context (mkosi's build_image is the model): what a build
// does reads top to bottom in one list, and the "[n/total]" of its progress lines is that list's length, not a
// number kept beside it (PACKER_STAGES said 5 for four stages).
import type { BuildLog } from "../buildlog";

export interface BuildDirs {
    /** Scratch space of this build; removed when the build ends. */
    work: string;
    /** Shared package caches, reused by every build. */
    cache: string;
}

export interface Step<C> {
    /** Shown in progress lines; a function when it names something only the context knows. */
    readonly name: string | ((ctx: C) => string);
    run(ctx: C): Promise<unknown> | void;
}

export interface BuilderOutput {
    /** The package manifest file (moved beside the build). */
    pkgManifest: string;
    /** What the image was made from, recorded in build.json. */
    base: unknown;
    /** For a format qemu-img cannot measure (.img.xz): the size of the disk it holds. */
    virtualSize?: number;
}

/**
 * One kind of build. The pipeline opens its context, runs `steps`, then `release` (also after a failure: mounts,
 * loop devices), then `finish`, which writes the artifact the pipeline hashes. Its count is `steps.length + 1`.
 */
export interface Builder<S, C> {
    open(spec: S, dirs: BuildDirs, log: BuildLog): C | Promise<C>;
    steps: ReadonlyArray<Step<C>>;
    release?(ctx: C): Promise<void>;
    finish: { name: string; run(ctx: C, out: string): Promise<void> };
    output(ctx: C): BuilderOutput;
}

export function stepName<C>(step: Step<C>, ctx: C): string {
    return typeof step.name === "function" ? step.name(ctx) : step.name;
}

/** A value an earlier step leaves in the context, read by a later one. */
export function known<T>(value: T | undefined, what: string): T {
    if (value === undefined) throw new Error(`${what} is not known yet: a build step ran before the one that finds it`);
    return value;
}

/**
 * Runs a builder's steps as numbered stages, releases what they hold, and finishes into `out` with `digest` (the
 * pipeline's streaming hash) as part of the last stage.
 */
export async function runBuilder<S, C, D>(builder: Builder<S, C>, spec: S, dirs: BuildDirs, log: BuildLog,
    out: string, digest: (out: string) => Promise<D>): Promise<{ digest: D; output: BuilderOutput }> {
    const total = builder.steps.length + 1;
    const ctx = await builder.open(spec, dirs, log);
    try {
        for (const step of builder.steps) await log.stage(stepName(step, ctx), total, async () => step.run(ctx));
    } finally {
        await builder.release?.(ctx);
    }
    const d = await log.stage(builder.finish.name, total, async () => {
        await builder.finish.run(ctx, out);
        return digest(out);
    });
    return { digest: d, output: builder.output(ctx) };
}
