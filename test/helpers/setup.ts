// Loaded by mocha before every test file: the same offline engine settings scripts/env.sh exports.
import * as path from "node:path";
import { cacheRoot } from "../../lib/cacheRoot";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
/** The per-user cache outside the checkout (scripts/env.sh): package archives and fixtures survive a fresh clone. */
export const CACHE_ROOT = process.env.IMAGE_FACTORY_CACHE ??= cacheRoot();
process.env.PATH = [path.join(REPO_ROOT, ".tools", "bin"), path.join(REPO_ROOT, "node_modules", ".bin"), process.env.PATH].join(path.delimiter);
process.env.PULUMI_SKIP_UPDATE_CHECK = "true";
process.env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION = "true";
process.env.PULUMI_NODEJS_TRANSPILE_ONLY = "true";
/**
 * What the tests write beside the checkout (builds, the engine's plugins and logs): REPO_ROOT/.cache, or
 * IMAGE_FACTORY_TEST_DIR when the checkout is not the test user's to write (scripts/test-as-user.sh).
 */
export const TEST_DIR = process.env.IMAGE_FACTORY_TEST_DIR ?? path.join(REPO_ROOT, ".cache");
process.env.PULUMI_HOME ??= path.join(TEST_DIR, "pulumi-home");
