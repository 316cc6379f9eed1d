// Dynamic provider: the offline validation gate. Publishing resources depend on it, and create fails with the
// report when a check fails, so a failing image is never published and `pulumi up` stops with the reasons.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as path from "node:path";
import { evidenceRunDir, type SigningOptions } from "../lib/evidence";
import { formatReport, type ValidateExpect } from "../lib/validate";
import { validateArtifact } from "../lib/validateArtifact";
import { writeValidationEvidence } from "../lib/validationEvidence";
import { FactoryResource } from "./dynamic";
import { engineReporter } from "./progress";

export interface EvidenceSettings {
    /** Absolute evidence root (factory:evidence.dir). */
    root: string;
    /** Signing key and passphrase; the passphrase is a secret input and never appears in outputs. */
    sign?: SigningOptions;
}

export interface ImageValidationInputs {
    qcow2: string;
    sha256: string;
    expect: ValidateExpect;
    /** When the image was built: validation evidence goes next to the build's packet. */
    buildTime?: string;
    evidence: EvidenceSettings;
    scratchDir: string;
    logUrn?: string;
}

export interface ImageValidationOutputs {
    qcow2: string;
    sha256: string;
    expect: ValidateExpect;
    passed: boolean;
    checks: Array<{ id: string; status: string; reason: string }>;
    evidencePath: string;
}

/** The run directory of this validation's evidence: the build's, unless that one already holds a validation. */
function runDirFor(i: ImageValidationInputs): string {
    const when = i.buildTime ? new Date(i.buildTime) : new Date();
    const dir = evidenceRunDir(i.evidence.root, i.expect.image, i.expect.version, when);
    return fs.existsSync(path.join(dir, "validate")) ? evidenceRunDir(i.evidence.root, i.expect.image, i.expect.version, new Date()) : dir;
}

async function validate(i: ImageValidationInputs): Promise<ImageValidationOutputs> {
    const report = engineReporter(i.logUrn);
    report(`→ ${i.expect.image} ${i.expect.version}: validating offline (cloud-init, sshd, python3, sudo, manifest, build info)…`);
    fs.mkdirSync(i.scratchDir, { recursive: true });
    const r = await validateArtifact(i.qcow2, i.expect, { scratch: i.scratchDir });
    const packet = await writeValidationEvidence(runDirFor(i), r, i.evidence.sign);
    if (!r.passed) {
        throw new Error(`${formatReport(r)}\nThe image is not published. Evidence: ${packet.dir}`);
    }
    report(`→ ${i.expect.image} ${i.expect.version}: all ${r.checks.length} checks passed in ${(r.durationMs / 1000).toFixed(1)}s; evidence ${packet.dir}`);
    return {
        qcow2: i.qcow2, sha256: i.sha256, expect: i.expect, passed: true, evidencePath: packet.dir,
        checks: r.checks.map((c) => ({ id: c.id, status: c.status, reason: c.reason })),
    };
}

export const provider: pulumi.dynamic.ResourceProvider<ImageValidationInputs, ImageValidationOutputs> = {
    async create(inputs) {
        const outs = await validate(inputs);
        return { id: `${inputs.expect.image}@${inputs.sha256.slice(0, 16)}`, outs };
    },
    async diff(_id, olds, news) {
        // A different image (or different expectations) must pass the gate again.
        const replaces = olds.sha256 !== news.sha256 ? ["sha256"] : JSON.stringify(olds.expect) !== JSON.stringify(news.expect) ? ["expect"] : [];
        return { changes: replaces.length > 0, replaces, deleteBeforeReplace: false };
    },
    async delete() {
        // Evidence is an audit trail: it outlives the resource.
    },
};

export class ImageValidation extends FactoryResource {
    declare readonly passed: pulumi.Output<boolean>;
    declare readonly checks: pulumi.Output<Array<{ id: string; status: string; reason: string }>>;
    declare readonly evidencePath: pulumi.Output<string>;

    constructor(name: string, args: pulumi.Inputs & { [K in keyof ImageValidationInputs]: pulumi.Input<ImageValidationInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
        super(provider as pulumi.dynamic.ResourceProvider, "ImageValidation", name, { ...args, passed: undefined, checks: undefined, evidencePath: undefined }, opts);
    }
}
