// Provenance of an artifact as an in-toto Statement v1 with a SLSA v1 provenance predicate, built from the
// build info every image carries: commit, base image and digest, recipe hash, builder and tool versions.
import type { RecordedBuildInfo } from "../contract";

export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
export const SLSA_PROVENANCE = "https://slsa.dev/provenance/v1";

export interface ProvenanceInput {
    /** The artifact's file name as published, and its sha256. */
    name: string;
    sha256: string;
    version: string;
    buildInfo: RecordedBuildInfo;
}

export function inTotoStatement(p: ProvenanceInput): Record<string, unknown> {
    const info = p.buildInfo;
    const deps: Array<Record<string, unknown>> = [];
    if (info.git?.commit && info.git.commit !== "unknown") deps.push({ name: "source", digest: { gitCommit: info.git.commit }, annotations: { dirty: String(!!info.git.dirty) } });
    if (info.base?.id) deps.push({ name: info.base.id, ...(info.base.mirror ? { uri: info.base.mirror } : {}), digest: { sha256: info.base.sha256 ?? "unknown" } });
    if (info.recipe?.sha256) deps.push({ name: `recipe:${info.image ?? p.name}`, digest: { sha256: info.recipe.sha256 } });
    return {
        _type: STATEMENT_TYPE,
        subject: [{ name: p.name, digest: { sha256: p.sha256 } }],
        predicateType: SLSA_PROVENANCE,
        predicate: {
            buildDefinition: {
                buildType: `urn:image-factory:build:${info.builder ?? "unknown"}:v1`,
                externalParameters: { image: info.image ?? p.name, version: p.version },
                internalParameters: { buildKey: info.buildKey, builderRevision: info.builderRevision, sourceDateEpoch: info.sourceDateEpoch },
                resolvedDependencies: deps,
            },
            runDetails: {
                builder: { id: "urn:image-factory:builder", version: info.tools ?? {} },
                metadata: { invocationId: info.buildKey, startedOn: info.buildTime },
            },
        },
    };
}
