// Progress from inside a dynamic provider: the engine address reaches the provider process through our
// pulumi-resource-pulumi-nodejs shim (PULUMI_NODEJS_ENGINE), so a long create can log lines that the engine
// shows under the resource, as `pulumi.log.info` does in a program. Without an engine (unit tests) lines go
// to stderr.
import * as pulumi from "@pulumi/pulumi";
import * as engproto from "@pulumi/pulumi/proto/engine_pb";
import * as settings from "@pulumi/pulumi/runtime/settings";
import { watchEngine } from "../lib/engineWatch";

export type Reporter = (message: string) => void;

export function engineReporter(urn: string | undefined): Reporter {
    const engine = process.env.PULUMI_NODEJS_ENGINE ? settings.getEngine() : undefined;
    if (!engine) return (message) => process.stderr.write(`${message}\n`);
    // Under a real engine, long operations stop when it dies instead of running on as orphans.
    watchEngine();
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

/**
 * A URN as a plain value for a child's `logUrn` input, without a resource dependency. A child input that
 * depends on its parent component makes the engine wait for all of the parent's children, which deadlocks as soon
 * as one child consumes another's output; the URN string is only a label for log lines, so the dependency is
 * deliberately dropped.
 */
export function urnLabel(name: string, type: string, parent: pulumi.Resource): pulumi.Output<string> {
    return pulumi.output(new Promise<string>((resolve) => {
        pulumi.createUrn(name, type, parent).apply((u) => resolve(u));
    }));
}
