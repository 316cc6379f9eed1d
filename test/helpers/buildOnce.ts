// A build in a process of its own, as a second stack's provider would run it: `node -r ts-node/register/transpile-only
// test/helpers/buildOnce.ts <image> <workDir>` prints its progress lines, then the result as the last line (JSON).
import { buildImage } from "../../lib/stages/pipeline";
import { planBuild } from "../../lib/stages/plan";
import { loadRecipe } from "../../lib/recipe";
import { machineDebian } from "./debian";
import { REPO_ROOT } from "./setup";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl build-lock-test";

async function main(name: string, workDir: string): Promise<void> {
    const plan = planBuild({
        recipe: loadRecipe(name), projectDir: REPO_ROOT, workDir, bootstrapUser: { name: "ansible", authorizedKeys: [KEY] }, domain: "lab.example",
        debian: machineDebian(),
    });
    const result = await buildImage({ ...plan.request, version: "v2026.01.01", buildInfo: { ...plan.request.buildInfo, buildTime: "2026-01-01T00:00:00Z" } },
        (line) => console.log(line));
    console.log(JSON.stringify(result));
}

main(process.argv[2], process.argv[3]).catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
});
