// The Raspberry Pi OS-shaped base image of the Pi tests (test/fixtures/pi-base/build.sh), built once per
// version of that script and cached under the per-user cache (CACHE_ROOT/fixtures), which a fresh clone shares.
import * as fs from "node:fs";
import * as path from "node:path";
import { sha256Hex } from "../../lib/sha256";
import { hashFile } from "../../lib/sha256";
import { withFileLock } from "../../lib/fileLock";
import { nsRun } from "../../lib/stages/namespace";
import { CACHE_ROOT, REPO_ROOT } from "./setup";
import { machineDebian } from "./debian";

export async function piBaseImage(): Promise<{ path: string; sha256: string }> {
    const script = path.join(REPO_ROOT, "test/fixtures/pi-base/build.sh");
    const key = sha256Hex(fs.readFileSync(script)).slice(0, 16);
    const dir = path.join(CACHE_ROOT, "fixtures");
    const img = path.join(dir, `pi-base-${key}.img`);
    fs.mkdirSync(dir, { recursive: true });
    // One builder at a time across processes: two test runs sharing the per-user cache (a CI run beside a developer's)
    // both built it, and the second's rename replaced the file the first had already hashed (its bytes differ per
    // build), so the first run's build key changed under it.
    await withFileLock(`${img}.lock`, async () => {
        if (fs.existsSync(img)) return;
        const { mirror } = machineDebian();
        // As root of a build namespace, whoever runs the tests (issue 35): the image's files keep the image's own ids.
        await nsRun(["bash", script, img, mirror, path.join(CACHE_ROOT, "pi-base-packages")], { hint: "the Raspberry Pi test fixture could not be built" });
    }, 30 * 60_000);
    return { path: img, sha256: (await hashFile(img)).sha256 };
}
