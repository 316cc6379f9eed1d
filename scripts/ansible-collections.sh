#!/usr/bin/env bash
# Installs ansible/requirements.yml into the project-local ansible/collections (FR-6). Idempotent: a collection
# already present (there, or shipped by Debian's ansible package) at a version the file accepts is left alone,
# so a second run installs nothing. Offline builders: point IMAGE_FACTORY_COLLECTIONS_DIR at a directory of
# collection tarballs (ansible-galaxy collection download makes one) and they are installed from there.
# Usage: scripts/ansible-collections.sh [requirements.yml] [target dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req=${1:-$root/ansible/requirements.yml}
dest=${2:-$root/ansible/collections}
mkdir -p "$dest"
export ANSIBLE_COLLECTIONS_PATH="$dest:/usr/share/ansible/collections:/usr/lib/python3/dist-packages"
command -v ansible-galaxy >/dev/null || { echo "ansible-collections: ansible-galaxy is missing (Debian package ansible)" >&2; exit 1; }

# name and version constraint per requirement (a git ref pins the exact commit: any installed copy of ours counts
# only if it was installed from that ref, which ansible-galaxy records in MANIFEST.json's version).
mapfile -t wanted < <(/usr/bin/python3 - "$req" <<'PY'
import sys, yaml
for c in (yaml.safe_load(open(sys.argv[1])) or {}).get("collections", []):
    c = c if isinstance(c, dict) else {"name": c}
    print(f'{c["name"]}\t{c.get("version", "*")}\t{c.get("type", "galaxy")}')
PY
)
installed=$(ansible-galaxy collection list --format json 2>/dev/null || echo '{}')
missing=()
for row in "${wanted[@]}"; do
  IFS=$'\t' read -r name constraint type <<<"$row"
  have=$(/usr/bin/python3 - "$name" "$constraint" "$type" "$installed" <<'PY'
import json, sys
name, constraint, typ, data = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
from ansible.galaxy.dependency_resolution.versioning import meets_requirements
for path, cols in data.items():
    v = cols.get(name, {}).get("version")
    if v is None: continue
    if typ == "git" or constraint == "*" or meets_requirements(v, constraint):
        print(f"{v} in {path}"); break
PY
)
  if [[ -n "$have" ]]; then echo "ansible-collections: $name ok ($have)"; else missing+=("$name"); fi
done
((${#missing[@]} == 0)) && { echo "ansible-collections: nothing to install"; exit 0; }

if [[ -n "${IMAGE_FACTORY_COLLECTIONS_DIR:-}" ]]; then
  for name in "${missing[@]}"; do
    tarball=$(ls "$IMAGE_FACTORY_COLLECTIONS_DIR"/"${name/./-}"-*.tar.gz 2>/dev/null | sort -V | tail -1 || true)
    [[ -n "$tarball" ]] || { echo "ansible-collections: no ${name/./-}-<version>.tar.gz in $IMAGE_FACTORY_COLLECTIONS_DIR" >&2; exit 1; }
    ansible-galaxy collection install --offline -p "$dest" "$tarball"
  done
  exit 0
fi
echo "ansible-collections: installing ${missing[*]} into $dest"
if ! ansible-galaxy collection install -r "$req" -p "$dest"; then
  echo "ansible-collections: could not install ${missing[*]}: this machine cannot reach their sources." >&2
  echo "  On a connected machine: ansible-galaxy collection download -r ansible/requirements.yml -p <dir>, copy <dir> here," >&2
  echo "  then: IMAGE_FACTORY_COLLECTIONS_DIR=<dir> make ansible-collections" >&2
  exit 1
fi
