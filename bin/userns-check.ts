// `make deps` / `make image.tools.check`: can the rootfs builder run here without root? It makes one real build
// namespace (lib/stages/namespace.ts), the way a build does, and prints the verdict in deps.sh's format; on failure,
// what stops it and the command that fixes it. Exit status 0 or 1.
import { checkUserNamespaces, hostIds, idMapFor, ROOT_FIRST_ID } from "../lib/stages/namespace";

async function main(): Promise<number> {
    const host = hostIds();
    try {
        await checkUserNamespaces();
        const m = idMapFor(host);
        const range = (r: { outer: number; count: number }) => `${r.outer}-${r.outer + r.count - 1}`;
        console.log(`  ok       ${"user namespaces".padEnd(30)} builds run as root of a namespace: uid 0 → ${host.user} (${host.uid}), ` +
            `1-65536 → ${range(m.uid[1])}${host.uid === 0 ? (m.uid[1].outer === ROOT_FIRST_ID ? " (root's default range)" : " (root's /etc/subuid range)") : " (/etc/subuid)"}`);
        return 0;
    } catch (e) {
        console.log(`  MISSING  ${"user namespaces".padEnd(30)} (required) ${(e as Error).message}`);
        return 1;
    }
}

main().then((code) => process.exit(code));
