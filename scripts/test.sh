#!/usr/bin/env bash
# The README's test command (`npm test`): set up what is missing, then run every test.
# Extra arguments go to mocha, e.g. `npm test -- --grep OciArtifact` or `npm test -- test/unit/config.test.ts`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
source scripts/env.sh
start=$SECONDS
tsc -p tsconfig.json --noEmit
echo "test: type check passed in $((SECONDS - start))s"
if (($# == 0)) || [[ "${*: -1}" == -* ]]; then set -- "$@" 'test/**/*.test.ts'; fi
exec mocha "$@"
