// The Raspberry Pi OS-shaped base image of the Pi tests (test/fixtures/pi-base/build.sh), built once per
// version of that script and cached under the per-user cache (CACHE_ROOT/fixtures), which a fresh clone shares.
import execa from "execa";
import * as fs from "node:fs";
import * as path from "node:path";
import { sha256Hex } from "../../lib/sha256";
import { hashFile } from "../../lib/sha256";
import { CACHE_ROOT, REPO_ROOT } from "./setup";
import { machineDebian } from "./debian";

export async function piBaseImage(): Promise<{ path: string; sha256: string }> {
    const script = path.join(REPO_ROOT, "test/fixtures/pi-base/build.sh");
    const key = sha256Hex(fs.readFileSync(script)).slice(0, 16);
    const dir = path.join(CACHE_ROOT, "fixtures");
    const img = path.join(dir, `pi-base-${key}.img`);
    fs.mkdirSync(dir, { recursive: true });
    if (!fs.existsSync(img)) {
        const { mirror } = machineDebian();
        await execa("bash", [script, img, mirror, path.join(CACHE_ROOT, "pi-debootstrap")], { stdio: "inherit" });
    }
    return { path: img, sha256: (await hashFile(img)).sha256 };
}
