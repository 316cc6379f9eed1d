#!/usr/bin/env bash
# The `preview` job (.github/workflows/preview.yml) for one lab stack on a pull request: the same engine, language host
# and proxmoxve plugin as `up` (built by setup from pinned Go modules, nothing downloaded), type check and
# `packer validate` as before, then `pulumi preview` with the policy pack. Writes the job summary and a short,
# digest-level PR comment body (per image: rebuilds or not by build key, the version it would get, the targets that
# change), whose path goes to the step output `comment_file`; the workflow posts it. Exits as the preview did.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ci_lab_job

ci_say "type check"
tsc -p tsconfig.json --noEmit
ci_say "packer validate every template"
node -r ./scripts/require-ts-cached.js bin/packer-validate.ts >&2

# The version is part of every image (its build.json says it), so a preview without a version would show every image
# rebuilding against the last run's. The preview takes the version the stack's images carry now (the last tag's): what
# it then shows rebuilding is what this change rebuilds; the comment names such an image's version as the next tag's.
ref=$(pulumi stack output images --stack "$STACK" --json 2>/dev/null |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const n={};for(const i of Object.values(JSON.parse(s||"{}")))if(i&&i.version&&!i.reusedFrom)n[i.version]=(n[i.version]||0)+1;const v=Object.entries(n).sort((a,b)=>b[1]-a[1])[0];process.stdout.write(v?v[0]:"")})' || true)
version_note=()
if [[ -n $ref ]]; then
  ci_config_set factory:version "$ref"
  version_note=(--version "the next tag's")
fi

out=$(ci_temp)
set +e
pulumi preview --stack "$STACK" --config-file "$ci_config" --policy-pack policy --json --show-sames --non-interactive > "$out/preview-$STACK.json" 2> "$out/preview-$STACK.err"
rc=$?
set -e
cat "$out/preview-$STACK.err" >&2
comment="$out/comment-$STACK.md"
node -r ./scripts/require-ts-cached.js bin/ci-summary.ts preview --stack "$STACK" --config-file "$ci_config" "${version_note[@]}" $( ((rc == 0)) || echo --failed) \
  < "$out/preview-$STACK.json" > "$comment"
ci_summary < "$comment"
ci_output comment_file "$comment"
if ((rc != 0)); then ci_fail "pulumi preview of $STACK failed (exit $rc): the comment and the log above say why"; fi
ci_say "preview of $STACK: $(wc -c < "$comment") characters of comment"
