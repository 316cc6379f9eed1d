// Dynamic provider: the offline validation gate. Publishing resources depend on it, and create fails with the
// report when a check fails, so a failing image is never published and `pulumi up` stops with the reasons.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import { bootCheck, bootEvidenceFiles, bootFailure, bootReportFile, bootReportKey, bootSeedCheck, type BootReport } from "../lib/validation/bootCheck";
import { writeFileAtomic } from "../lib/atomic";
import { evidenceRunDir, type SigningOptions } from "../lib/evidence/packet";
import { formatReport, type ValidateExpect } from "../lib/validation/offlineChecks";
import { validateArtifact } from "../lib/validation/validateArtifact";
import { writeValidationEvidence } from "../lib/evidence/validation";
import {dynamicResource, keyedDiff } from "./dynamic";
import { engineReporter } from "./progress";

export interface EvidenceSettings {
    /** Absolute evidence root (factory:evidence.dir). */
    root: string;
    /** Signing key and passphrase; the passphrase is a secret input and never appears in outputs. */
    sign?: SigningOptions;
}

export interface ImageValidationInputs {
    /** The artifact validated (qcow2, .img.xz or .iso). */
    artifact: string;
    sha256: string;
    expect: ValidateExpect;
    /** When the image was built: validation evidence goes next to the build's packet. */
    buildTime?: string;
    evidence: EvidenceSettings;
    scratchDir: string;
    /** The boot gate: boot an overlay of the image and run the smoke checks; off when absent. */
    bootGate?: BootSettings;
    logUrn?: string;
}

export interface BootSettings {
    timeoutSeconds: number;
    /** The hostname the boot's seed sets (the check proves the seed took effect). */
    hostname: string;
    /** images/<name>/smoke.sh, and its sha256 (a changed script boots again). */
    smokeScript?: string;
    smokeSha256?: string;
    /** A NoCloud seed ISO is proven by booting a cloud image of this stack with it attached. */
    seed?: { baseImage: string; baseSha256: string; authorizedKeys: string[] };
}

/** What a boot reported, as outputs and `build.json`-style records carry it. */
export interface BootSummary {
    passed: boolean;
    accelerator: string;
    sshReadySeconds: number;
    totalSeconds: number;
    checks: Array<{ id: string; passed: boolean; detail: string }>;
}

export interface ImageValidationOutputs {
    artifact: string;
    sha256: string;
    expect: ValidateExpect;
    passed: boolean;
    checks: Array<{ id: string; status: string; reason: string }>;
    /** Which gates ran: "offline" always, "boot" when the boot gate is on. */
    checksRan: string[];
    bootGate?: BootSettings;
    boot?: BootSummary;
    /** The key the boot's report is kept under (bootReportKey): a build-cache entry carries it. */
    bootReportKey?: string;
    evidencePath: string;
}

/** The run directory of this validation's evidence: the build's, unless that one already holds a validation. */
function runDirFor(i: ImageValidationInputs): string {
    const when = i.buildTime ? new Date(i.buildTime) : new Date();
    const dir = evidenceRunDir(i.evidence.root, i.expect.image, i.expect.version, when);
    return fs.existsSync(path.join(dir, "validate")) ? evidenceRunDir(i.evidence.root, i.expect.image, i.expect.version, new Date()) : dir;
}

export { bootReportKey };

/**
 * A boot is content-addressed like a build: the same bytes with the same smoke checks booted once are not booted
 * again (another stack, a re-run after refresh, a test). The report is kept beside the validation scratch.
 */
async function bootOnce(i: ImageValidationInputs, boot: BootSettings, report: (l: string) => void): Promise<BootReport> {
    const key = bootReportKey(i.sha256, i.expect.bootstrapUser, boot);
    const cache = bootReportFile(i.scratchDir, i.expect.image, key);
    if (fs.existsSync(cache)) {
        const r = JSON.parse(fs.readFileSync(cache, "utf8")) as BootReport;
        if (r.passed && fs.existsSync(r.consoleLog)) {
            report(`→ ${i.expect.image} ${i.expect.version}: these bytes already passed the boot check (${r.accelerator}, ${r.totalSeconds.toFixed(0)} s): not booting again`);
            return r;
        }
    }
    const common = { name: i.expect.image, user: i.expect.bootstrapUser, hostname: boot.hostname, workDir: path.join(i.scratchDir, "boots"),
        timeoutSeconds: boot.timeoutSeconds, log: report, consoleLog: cache.replace(/\.json$/, "-console.log") };
    const r = boot.seed
        ? await bootSeedCheck({ ...common, seedIso: i.artifact, baseImage: boot.seed.baseImage, authorizedKeys: boot.seed.authorizedKeys })
        : await bootCheck({ ...common, image: i.artifact, smokeScript: boot.smokeScript });
    await writeFileAtomic(cache, `${JSON.stringify(r, null, 2)}\n`);
    return r;
}


async function validate(i: ImageValidationInputs): Promise<ImageValidationOutputs> {
    const report = engineReporter(i.logUrn);
    report(`→ ${i.expect.image} ${i.expect.version}: validating offline (cloud-init, sshd, python3, sudo, manifest, build info)…`);
    fs.mkdirSync(i.scratchDir, { recursive: true });
    const r = await validateArtifact(i.artifact, i.expect, { scratch: i.scratchDir });
    // The boot comes after the offline checks pass (a boot of an image known to be bad proves nothing more).
    const boot = r.passed && i.bootGate ? await bootOnce(i, i.bootGate, report) : undefined;
    const bootFiles = boot ? bootEvidenceFiles(boot) : [];
    const packet = await writeValidationEvidence(runDirFor(i), r, i.evidence.sign, bootFiles);
    if (!r.passed) {
        throw new Error(`${formatReport(r)}\nThe image is not published. Evidence: ${packet.dir}`);
    }
    if (boot && !boot.passed) throw new Error(`${bootFailure(i.expect.image, i.expect.version, boot).message} Evidence: ${packet.dir}`);
    const ran = boot ? "offline and boot" : "offline";
    report(`→ ${i.expect.image} ${i.expect.version}: all ${r.checks.length + (boot?.checks.length ?? 0)} checks (${ran}) passed; evidence ${packet.dir}`);
    return {
        artifact: i.artifact, sha256: i.sha256, expect: i.expect, passed: true, evidencePath: packet.dir,
        checks: r.checks.map((c) => ({ id: c.id, status: c.status, reason: c.reason })),
        checksRan: boot ? ["offline", "boot"] : ["offline"],
        ...(i.bootGate ? { bootGate: i.bootGate } : {}),
        ...(boot && i.bootGate ? { bootReportKey: bootReportKey(i.sha256, i.expect.bootstrapUser, i.bootGate) } : {}),
        ...(boot ? { boot: { passed: boot.passed, accelerator: boot.accelerator, sshReadySeconds: boot.sshReadySeconds, totalSeconds: boot.totalSeconds, checks: boot.checks } } : {}),
    };
}

export const provider: pulumi.dynamic.ResourceProvider<ImageValidationInputs, ImageValidationOutputs> = {
    async create(inputs) {
        const outs = await validate(inputs);
        return { id: `${inputs.expect.image}@${inputs.sha256.slice(0, 16)}`, outs };
    },
    async diff(_id, olds, news) {
        // A different image (or different expectations) must pass the gate again.
        return keyedDiff(olds, news, { replace: ["sha256", "expect", "bootGate"] });
    },
    async delete() {
        // Evidence is an audit trail: it outlives the resource.
    },
};

export const ImageValidation = dynamicResource("ImageValidation", provider, { outputs: ["passed", "checks", "evidencePath", "checksRan", "boot", "bootReportKey"] });
export type ImageValidation = InstanceType<typeof ImageValidation>;
