// Progress from inside a dynamic provider: the engine address reaches the provider process through our
// pulumi-resource-pulumi-nodejs shim (PULUMI_NODEJS_ENGINE), so a long create can log lines that the engine
// shows under the resource, as `pulumi.log.info` does in a program. Without an engine (unit tests) lines go
// to stderr.
import * as engproto from "@pulumi/pulumi/proto/engine_pb";
import * as settings from "@pulumi/pulumi/runtime/settings";

export type Reporter = (message: string) => void;

export function engineReporter(urn: string | undefined): Reporter {
    const engine = process.env.PULUMI_NODEJS_ENGINE ? settings.getEngine() : undefined;
    if (!engine) return (message) => process.stderr.write(`${message}\n`);
    // Each line waits for the previous one's acknowledgement, so the engine shows them in order.
    let queue: Promise<void> = Promise.resolve();
    return (message) => {
        const req = new engproto.LogRequest();
        req.setSeverity(engproto.LogSeverity.INFO);
        req.setMessage(message);
        req.setUrn(urn ?? "");
        req.setStreamid(0);
        req.setEphemeral(false);
        queue = queue.then(() => new Promise<void>((resolve) => engine.log(req, () => resolve())));
    };
}
