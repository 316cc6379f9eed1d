#!/usr/bin/env bash
# The `up` job (.github/workflows/up.yml) for one lab stack: checks first (make lab.check: seconds, read-only), then
# `pulumi up` with the run's version (the tag) and max pass in a copy of the stack file outside the checkout, the
# outputs for Terraform and Ansible, the job summary, and the release metadata committed back to the default branch
# once (a re-run of the same tag changes nothing and commits nothing).
# Environment, besides lib.sh's: MAX_PASS (manual runs), DEFAULT_BRANCH (where release metadata goes), and the
# targets' tokens the program reads (GITHUB_TOKEN, GHCR_TOKEN, GHCR_USERNAME, PROXMOX_VE_API_TOKEN, OCI_REGISTRY), and
# the evidence key (EVIDENCE_GPG_KEY, EVIDENCE_GPG_PASSPHRASE) when the lab signs.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ci_lab_job
# With the repository variable EVIDENCE_GPG_KEY set, evidence is signed and a stack whose factory:buildCache pushes
# signs its entries with that key (its secret half in the runner's keyring, its passphrase EVIDENCE_GPG_PASSPHRASE).
if [[ -n "${EVIDENCE_GPG_KEY:-}" ]]; then export EVIDENCE_SIGN=1; fi

branch=${DEFAULT_BRANCH:?DEFAULT_BRANCH is empty: the workflow passes the default branch of the repository}
ci_metadata_pull "$branch"

tag=$(ci_tag)
if [[ -n $tag ]]; then ci_config_set factory:version "$tag"; fi
if [[ -n "${MAX_PASS:-}" ]]; then
  [[ $MAX_PASS =~ ^[123]$ ]] || ci_fail "max_pass must be 1, 2 or 3 (got '$MAX_PASS')"
  ci_config_set factory:maxPass "$MAX_PASS"
fi

# Every problem a run would meet after an hour of builds (a missing token, the placeholder key, a store URL that
# serves another directory, an unreachable backend), reported at once before anything is built.
ci_say "lab.check $STACK"
node -r ./scripts/require-ts-cached.js bin/lab-check.ts --stack "$STACK" --config-file "$ci_config" >&2 ||
  ci_fail "make lab.check STACK=$STACK found the problems above: nothing was built; fix them and run the job again"

started=$SECONDS
set +e
pulumi up --stack "$STACK" --config-file "$ci_config" --yes --skip-preview --suppress-outputs --non-interactive 2>&1 | tee "$(ci_temp)/up-$STACK.log"
rc=${PIPESTATUS[0]}
set -e
if ((rc != 0)); then
  if grep -q 'the stack is currently locked' "$(ci_temp)/up-$STACK.log"; then
    ci_fail "stack $STACK is locked by another update (another runner, or one that was killed). Wait for it; if no update runs any more, \`pulumi cancel --stack $STACK\` with the same PULUMI_BACKEND_URL removes the lock"
  fi
  ci_fail "pulumi up of $STACK failed (exit $rc): the log above says why"
fi
ci_say "pulumi up $STACK: $((SECONDS - started)) s"

# The outputs contract as the consumers take it (Terraform tfvars, Ansible vars), and the run's summary.
node -r ./scripts/require-ts-cached.js bin/consumer-vars.ts --stack "$STACK" >&2
pulumi stack output images --stack "$STACK" --json |
  node -r ./scripts/require-ts-cached.js bin/ci-summary.ts outputs --stack "$STACK" --tag "${tag:-}" | ci_summary

# releases/, manifests/ (tools.json and one per image) and docs/releases.md, written by the run into the checkout:
# docs/releases.md is computed from every releases/*.json, so the next tag's changelog needs them on the default
# branch. Pushed rather than proposed in a pull request: they record what was already published. A protected branch
# must let the workflow's token push. Never forced.
ci_metadata_push "$branch" "Release metadata of ${tag:-a manual run} ($STACK)"
