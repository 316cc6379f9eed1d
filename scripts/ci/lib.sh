# shellcheck shell=bash
# What the CI jobs share (scripts/ci/*.sh source this). A workflow job checks out, maps variables and secrets to
# environment variables, and calls one script; everything else happens here, so the rehearsal (test/e2e/rehearsal.test.ts)
# runs the very code a runner runs. Environment read (each named in README "Running the labs from CI"):
#   STACK                     dvnt or dvntm
#   PULUMI_BACKEND_URL        the labs' shared state backend (s3://…, or file:// on a persistent disk)
#   PULUMI_CONFIG_PASSPHRASE  the passphrase of the stacks' secrets provider
#   RUNNER_TEMP               scratch space of the job (Actions sets it; outside the checkout)
# and GITHUB_* as Actions sets them. Nothing here writes a tracked file but release metadata, which up.sh commits.
set -euo pipefail

ci_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ci_root"

ci_say() { printf 'ci: %s\n' "$*" >&2; }
ci_fail() { printf '::error::%s\n' "$*" >&2; exit 1; }

# The job's scratch directory: Actions' RUNNER_TEMP (emptied per job), never the checkout.
ci_temp() {
  local t="${RUNNER_TEMP:-}"
  [[ -n $t ]] || t=$(mktemp -d)
  mkdir -p "$t/image-factory"
  printf '%s\n' "$t/image-factory"
}

ci_require_stack() {
  case "${STACK:-}" in
    dvnt | dvntm) ;;
    *) ci_fail "STACK must be dvnt or dvntm (the workflow's matrix sets it), got '${STACK:-}'" ;;
  esac
}

# The backend must be one both labs' runners share and that outlives a checkout: refuse the in-checkout default
# (a runner's clean checkout would wipe the state every run) before scripts/env.sh would fill it in.
ci_require_backend() {
  [[ -n "${PULUMI_BACKEND_URL:-}" ]] ||
    ci_fail "PULUMI_BACKEND_URL is not set: set the repository variable PULUMI_BACKEND_URL to the labs' state backend (s3://<bucket>?endpoint=…, or file:///<persistent dir>); README 'Where the lab's state lives'"
  case "$PULUMI_BACKEND_URL" in
    file://*)
      local dir=${PULUMI_BACKEND_URL#file://}
      dir=${dir%%\?*}
      case "$(realpath -m "$dir")/" in
        "$ci_root"/*) ci_fail "PULUMI_BACKEND_URL points into the checkout ($dir): the runner's next clean checkout would delete the state; use a directory outside it or an S3 backend" ;;
      esac
      ;;
  esac
  [[ -n "${PULUMI_CONFIG_PASSPHRASE:-}" ]] || ci_fail "PULUMI_CONFIG_PASSPHRASE is empty: set the repository secret PULUMI_CONFIG_PASSPHRASE (the stacks' secrets passphrase)"
}

# Setup (idempotent, warm in seconds) and the engine's offline settings; the backend as the workflow gave it.
ci_setup() {
  local scope=${1:---lab}
  bash scripts/setup.sh "$scope" >&2
  # shellcheck source=../env.sh
  source scripts/env.sh
}

# pulumi login proves the backend answers (and, for S3, that the credentials work) before anything else runs.
ci_login() {
  local out
  if ! out=$(pulumi login "$PULUMI_BACKEND_URL" --non-interactive 2>&1); then
    ci_fail "the state backend $(ci_backend_shown) does not answer: ${out//$'\n'/ }"
  fi
}

# The backend URL without credentials or query (for messages).
ci_backend_shown() { local u=${PULUMI_BACKEND_URL%%\?*}; printf '%s\n' "${u/\/\/*@//}"; }

# The run's copy of Pulumi.<stack>.yaml, outside the checkout: the run's own values (the tag's version, max_pass)
# and the secrets provider's salt go there, so the tracked file never changes (a dirty tree would refuse the
# release-metadata rebase and mark provenance dirty). Creates the stack on first use.
ci_stack() {
  ci_config="$(ci_temp)/Pulumi.$STACK.yaml"
  cp "Pulumi.$STACK.yaml" "$ci_config"
  if ! pulumi stack ls --json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.exit(JSON.parse(s).some(x=>x.name===process.argv[1]||x.name.endsWith("/"+process.argv[1]))?0:1))' "$STACK"; then
    ci_say "stack $STACK does not exist in $(ci_backend_shown): creating it (secrets provider: passphrase)"
    # stack init writes the new salt into Pulumi.<stack>.yaml of the directory it runs in: a scratch copy of the
    # project file, not the checkout. The salt is kept in the stack's state too, where ci_salt reads it.
    local scratch
    scratch=$(mktemp -d)
    cp Pulumi.yaml "$scratch/"
    (cd "$scratch" && pulumi stack init "$STACK" --secrets-provider passphrase --non-interactive >&2)
    rm -rf "$scratch"
  fi
  pulumi stack select "$STACK" --non-interactive >&2
  if ! grep -q '^encryptionsalt:' "$ci_config"; then
    local salt
    salt=$(pulumi stack export --stack "$STACK" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const p=JSON.parse(s).deployment?.secrets_providers;process.stdout.write(p?.type==="passphrase"?p.state?.salt??"":"")})')
    [[ -n $salt ]] || ci_fail "stack $STACK has no passphrase salt in its state: it was made with another secrets provider; see README 'Where the lab's state lives'"
    printf 'encryptionsalt: %s\n' "$salt" >> "$ci_config"
  fi
  export ci_config
}

# What every lab job does first: the stack named, the backend refused if a clean checkout would lose it, setup,
# login (the backend answers), and the run's copy of the stack file.
ci_lab_job() {
  ci_require_stack
  ci_require_backend
  ci_setup --lab
  ci_login
  ci_stack
}

# One config value of this run, into the run's copy only.
ci_config_set() { pulumi config set --stack "$STACK" --config-file "$ci_config" --path "$1" "$2" >&2; }

# Appends markdown to the job's summary (a file Actions shows on the run's page), or to stderr outside Actions.
ci_summary() {
  if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then cat >> "$GITHUB_STEP_SUMMARY"; else cat >&2; fi
}

# key=value for later steps of the job (Actions' GITHUB_OUTPUT file).
ci_output() {
  if [[ -n "${GITHUB_OUTPUT:-}" ]]; then printf '%s=%s\n' "$1" "$2" >> "$GITHUB_OUTPUT"; fi
}

# The release tag of this run, when it is one (refs/tags/vYYYY.MM.DD[.N]).
ci_tag() {
  if [[ "${GITHUB_REF_TYPE:-}" == tag ]]; then printf '%s\n' "${GITHUB_REF_NAME:?GITHUB_REF_NAME is empty on a tag run}"; fi
}

# Release metadata (releases/, manifests/, docs/releases.md) lives on the default branch, which moves after a tag: a tag's
# checkout lacks the metadata of its own and later runs. Before the run the checkout takes the branch's (so the
# changelog is whole and a re-run finds its records); lib/git.ts does not count these paths as a dirty tree.
ci_metadata_paths=(releases manifests docs/releases.md)
ci_metadata_pull() {
  local branch=$1
  git fetch -q origin "$branch"
  ci_metadata_base=$(git rev-parse "origin/$branch")
  local p
  for p in "${ci_metadata_paths[@]}"; do
    if git cat-file -e "$ci_metadata_base:$p" 2>/dev/null; then git checkout -q "$ci_metadata_base" -- "$p"; fi
  done
  export ci_metadata_base
}

# After the run: the metadata as the checkout now has it, committed onto the default branch (not onto the tag's commit,
# so no rebase can conflict), once: nothing changed, nothing committed. A branch that moved meanwhile is fetched and
# the commit made again on top. The checkout is left as it was checked out.
ci_metadata_push() {
  local branch=$1 message=$2 attempt tree commit
  export GIT_AUTHOR_NAME=image-factory GIT_AUTHOR_EMAIL=image-factory@users.noreply.github.com
  export GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
  local index
  index="$(ci_temp)/metadata-index"
  for attempt in 1 2 3; do
    rm -f "$index"
    GIT_INDEX_FILE=$index git read-tree "$ci_metadata_base"
    # --ignore-removal: a record another run added meanwhile stays, even if this checkout never had it.
    GIT_INDEX_FILE=$index git add --ignore-removal -- "${ci_metadata_paths[@]}" 2>/dev/null || true
    tree=$(GIT_INDEX_FILE=$index git write-tree)
    if [[ "$tree" == "$(git rev-parse "$ci_metadata_base^{tree}")" ]]; then
      ci_say "no release metadata changed"
      ci_output metadata_commit ""
      ci_metadata_restore
      return 0
    fi
    commit=$(git commit-tree "$tree" -p "$ci_metadata_base" -m "$message")
    if git push -q origin "$commit:refs/heads/$branch"; then
      ci_say "release metadata pushed to $branch: $(git rev-parse --short "$commit")"
      ci_output metadata_commit "$commit"
      ci_metadata_restore
      return 0
    fi
    ci_say "push attempt $attempt refused (the branch moved meanwhile?); again on top of it"
    sleep $((attempt * 5))
    git fetch -q origin "$branch"
    ci_metadata_base=$(git rev-parse "origin/$branch")
  done
  ci_fail "could not push the release metadata to $branch (after 3 attempts): the run's artifacts are published; commit ${ci_metadata_paths[*]} by hand"
}

# The checkout as it was checked out: the metadata paths back to HEAD's (index and files), the run's new files gone.
ci_metadata_restore() {
  local p
  git reset -q HEAD -- "${ci_metadata_paths[@]}" 2>/dev/null || true
  for p in "${ci_metadata_paths[@]}"; do
    if git cat-file -e "HEAD:$p" 2>/dev/null; then git checkout -q HEAD -- "$p"; fi
  done
  git clean -fdq -- "${ci_metadata_paths[@]}"
}
