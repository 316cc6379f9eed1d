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
process.env.PULUMI_HOME ??= path.join(REPO_ROOT, ".cache", "pulumi-home");
