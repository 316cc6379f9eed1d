// Waiting, in one place: the pause between tries of a call that failed for a reason worth another try (a dropped
// connection, a 5xx, a 429), and the plain sleep of a poll.

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The pause before try `attempt + 1` after `attempt` failures: baseMs, 2×, 4×… (exponential, no jitter: one writer each). */
export function backoffMs(baseMs: number, attempt: number): number {
    return baseMs * 2 ** Math.max(0, attempt - 1);
}
