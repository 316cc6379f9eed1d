// fetch <oci://registry/repo:tag | https://…/file.qcow2> --sha256 <hex> [--image <name>] [--cache <dir>] [--plain-http]
// Pulls a published qcow2, verifies it against the expected sha256 and prints its path in the cache
// (<cache>/<image>/<sha256>/<file>.qcow2). Credentials: GHCR_USERNAME or GITHUB_ACTOR, and GHCR_TOKEN.
// oras: ORAS (or TOOLSMITH_ORAS) = path to the binary, else .tools/bin/oras, else PATH.
import * as path from "node:path";
import { fetchArtifact } from "../lib/publish/fetchArtifact";
import { parseCli } from "../lib/cli";

async function main(): Promise<number> {
    const usage = "fetch <oci://registry/repository:tag | https://host/path/file.qcow2> --sha256 <hex> [--image <name>] [--cache <dir>] [--plain-http]";
    const cli = parseCli({ values: ["sha256", "image", "cache"], flags: ["plain-http"], positionals: true, usage });
    const argValue = (name: "sha256" | "image" | "cache") => cli.value(name);
    const ref = cli.positionals[0];
    const sha256 = argValue("sha256");
    if (!ref || !sha256 || cli.positionals.length > 1) {
        console.error(`usage: ${usage}`);
        return 2;
    }
    if (!process.env.ORAS && process.env.TOOLSMITH_ORAS) process.env.ORAS = process.env.TOOLSMITH_ORAS;
    const image = argValue("image") ?? (ref.startsWith("oci://") ? path.basename(ref.replace(/[:@][^/]*$/, "")) : path.basename(ref).replace(/(-v[\d.]+)?\.qcow2$/, ""));
    const r = await fetchArtifact({
        ref, sha256, image,
        cacheDir: path.resolve(argValue("cache") ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(process.env.HOME ?? ".", ".cache"), "image-factory", "images")),
        username: process.env.GHCR_USERNAME ?? process.env.GITHUB_ACTOR,
        password: process.env.GHCR_TOKEN,
        plainHttp: cli.flag("plain-http"),
        log: (l) => console.error(l),
    });
    console.error(r.cached ? "fetch: cache hit, verified" : "fetch: pulled and verified");
    console.log(r.path);
    return 0;
}

main().then((c) => process.exit(c), (err: Error) => {
    console.error(`fetch: ${err.message}`);
    process.exit(1);
});
