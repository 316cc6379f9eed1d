// Polls a condition until it holds, for tests that watch another process or the engine make progress.

/**
 * Resolves once `ok()` holds; rejects after `ms`, or as soon as `stop()` names a reason to give up (the process
 * being watched ended, say).
 */
export async function waitFor(what: string, ok: () => boolean, ms: number, opts: { pollMs?: number; stop?: () => string | undefined } = {}): Promise<void> {
    const end = Date.now() + ms;
    while (!ok()) {
        const stopped = opts.stop?.();
        if (stopped) throw new Error(`${stopped} before ${what}`);
        if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
    }
}
