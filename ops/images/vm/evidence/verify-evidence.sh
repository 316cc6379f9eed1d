#!/usr/bin/env bash
# The runbook's (seed 002) path to the evidence check: `ops/images/vm/evidence/verify-evidence.sh --dir <dir>` is
# bin/verify-evidence, which verifies every packet at or below <dir> (checksums, and the GPG signature when signed).
here=$(cd "$(dirname "$0")/../../../.." && pwd)
exec "$here/bin/verify-evidence" "$@"
