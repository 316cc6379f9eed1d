#!/usr/bin/env bash
# The main job of the README quickstart: `pulumi up` of the embedded `local` stack, with everything it needs:
# setup (OS packages, npm ci, engine built from Go modules), the loopback services, the stack in the file
# backend inside the checkout, then the update itself. Safe to re-run: unchanged inputs build nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh --main
source scripts/env.sh
# The passphrase of the local stack is public on purpose: the local stack holds no credentials. Other stacks
# must bring their own PULUMI_CONFIG_PASSPHRASE (or another secrets provider).
export PULUMI_CONFIG_PASSPHRASE=${PULUMI_CONFIG_PASSPHRASE-image-factory-local}
bash scripts/services.sh start
pulumi stack select local >/dev/null 2>&1 || pulumi stack init local --secrets-provider passphrase
pulumi up --stack local --yes "$@"
echo
echo "outputs (pulumi stack output --stack local --json):"
pulumi stack output --stack local --json
