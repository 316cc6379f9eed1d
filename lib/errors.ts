// The two kinds of failure callers decide on: a mistake the user fixes (bad config, unknown image, missing tool —
// the message names the fix, a stack trace adds nothing), and an answer from a service, classified by its HTTP
// status rather than by the wording of its message. Subclasses are safe to use with instanceof: since the dynamic
// providers run the checkout's modules (providers/dynamic.ts), no copy of these classes is serialized anywhere.

/** A failure the user fixes; its message says how. The program turns it into a plain engine error (no trace). */
export class UserError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "UserError";
    }
}

/** A service answered with an HTTP status (or, for tools such as oras, reported one in its output). */
export class HttpStatusError extends Error {
    constructor(message: string, readonly status: number | undefined) {
        super(message);
        this.name = "HttpStatusError";
    }
}

/** The HTTP status an error carries (HttpStatusError, Octokit's RequestError, our own `{ status }` errors). */
export function statusOf(err: unknown): number | undefined {
    const s = err && typeof err === "object" ? (err as { status?: unknown }).status : undefined;
    return typeof s === "number" && s > 0 ? s : undefined;
}

/** 401 or 403: the service refused these credentials (or their absence). */
export function refusedCredentials(err: unknown): boolean {
    const s = statusOf(err);
    return s === 401 || s === 403;
}

export function isUserError(err: unknown): err is UserError {
    return err instanceof UserError;
}
