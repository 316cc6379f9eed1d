#!/usr/bin/env bash
# The `publish` job (.github/workflows/publish-oci.yml): one QCOW2 pushed as an oras-compatible OCI artifact (the
# media type as layer and artifact type, the title, source and revision annotations), then pulled back until its
# bytes hash to what was pushed. The registry defaults to GitHub's container registry (ghcr.io).
# Environment: QCOW2_PATH (the file), IMAGE_REF (registry/owner/repo:tag; default
# <OCI_REGISTRY or ghcr.io>/<owner>/<repo>:latest), MEDIA_TYPE, OCI_REGISTRY, GHCR_TOKEN (the password, read from
# the environment and given to oras on stdin, never in argv), GITHUB_ACTOR (the user), and GITHUB_REPOSITORY,
# GITHUB_REPOSITORY_OWNER, GITHUB_SERVER_URL, GITHUB_SHA as Actions sets them.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

qcow2=${QCOW2_PATH:-dist/image.qcow2}
media_type=${MEDIA_TYPE:-application/vnd.deevnet.qcow2}
[[ -f $qcow2 ]] || ci_fail "no QCOW2 at $qcow2 (the qcow2_path input; artifact_name downloads one into dist/ first)"
if ! command -v oras >/dev/null; then
  bash tools/build.sh oras >&2
  PATH="$ci_root/.tools/bin:$PATH"
fi

ref=${IMAGE_REF:-}
if [[ -z $ref ]]; then
  owner=${GITHUB_REPOSITORY_OWNER:?GITHUB_REPOSITORY_OWNER is empty: pass image_ref or run in Actions}
  repo=${GITHUB_REPOSITORY#*/}
  ref="${OCI_REGISTRY:-ghcr.io}/${owner,,}/${repo,,}:latest"
fi
ci_output image_ref "$ref"

sha=$(sha256sum "$qcow2" | cut -d' ' -f1)
ci_output sha256 "$sha"

[[ -n "${GHCR_TOKEN:-}" ]] || ci_fail "GHCR_TOKEN is empty: the workflow passes secrets.GITHUB_TOKEN (packages: write) or a token with write:packages"
printf '%s' "$GHCR_TOKEN" | oras login "${ref%%/*}" --username "${GITHUB_ACTOR:?GITHUB_ACTOR is empty}" --password-stdin >&2

name=$(basename "$qcow2")
(cd "$(dirname "$qcow2")" && oras push "$ref" "$name:$media_type" \
  --annotation "org.opencontainers.image.title=$name" \
  --annotation "org.opencontainers.image.source=${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-unknown}" \
  --annotation "org.opencontainers.image.revision=${GITHUB_SHA:-$(git -C "$ci_root" rev-parse HEAD)}" \
  --artifact-type "$media_type" >&2)

# A registry may answer a pull of a just-pushed tag before it serves it: poll, and compare the bytes.
pulled=$(ci_temp)/pulled
for attempt in $(seq 1 20); do
  rm -rf "$pulled" && mkdir -p "$pulled"
  if oras pull "$ref" -o "$pulled" >/dev/null 2>&1; then
    file=$(find "$pulled" -name '*.qcow2' | head -n1)
    if [[ -n $file && "$(sha256sum "$file" | cut -d' ' -f1)" == "$sha" ]]; then
      ci_say "pullable after $attempt attempt(s): $ref"
      ci_summary <<SUMMARY
### OCI artifact published

| | |
|---|---|
| reference | \`oci://$ref\` |
| qcow2_sha256 | \`$sha\` |

Consume with: \`bin/fetch oci://$ref --sha256 $sha\`
SUMMARY
      exit 0
    fi
  fi
  sleep $((attempt * 3))
done
ci_fail "$ref is not pullable with a .qcow2 of sha256 $sha"
