#!/usr/bin/env bash
# One image of the stack into the shared build cache (up-stack.yml's matrix: one job per image, on any runner with the
# lab's labels): `make build.cache` with the run's version. A verified entry of the image's build key is used as it
# is; otherwise the image is built, gated as the stack gates it and pushed, signed with the lab's evidence key. The
# `up` job that follows pulls every such build instead of making it, and the passes still order what enters the lab.
# Environment, besides lib.sh's: IMAGE (the matrix's), the registry's GHCR_TOKEN/GHCR_USERNAME/OCI_REGISTRY, and the
# evidence key: EVIDENCE_GPG_KEY (its secret key in the runner's keyring) and EVIDENCE_GPG_PASSPHRASE.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ci_require_stack
[[ -n "${IMAGE:-}" ]] || ci_fail "IMAGE is empty: the build-cache matrix passes one image of the stack"
[[ -n "${EVIDENCE_GPG_KEY:-}" ]] ||
  ci_fail "EVIDENCE_GPG_KEY is empty: build-cache entries are signed with the lab's evidence key; set the repository variable EVIDENCE_GPG_KEY (README 'The shared build cache')"
export EVIDENCE_SIGN=1
ci_setup --lab

tag=$(ci_tag)
started=$SECONDS
make build.cache IMAGE="$IMAGE" STACK="$STACK" ${tag:+VERSION="$tag"} EVIDENCE_DIR="$(ci_temp)/evidence" >&2 ||
  ci_fail "make build.cache IMAGE=$IMAGE STACK=$STACK failed (the log above says why); the up job will build $IMAGE itself"
ci_say "build-cache $IMAGE: $((SECONDS - started)) s"
printf '| %s | in the build cache after %s s |\n' "$IMAGE" "$((SECONDS - started))" | ci_summary
