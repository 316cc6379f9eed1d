#!/usr/bin/env bash
# One-time (and idempotent) setup used by both quickstart commands: OS packages, npm packages, the engine and
# tools built from Go modules, and the SSH key the local stack bakes into its image.
# The Makefile never calls this: it only reports (FR-12). Re-running costs a few seconds when nothing changed.
# Usage: setup.sh          everything (tests, every builder and stack)
#        setup.sh --main   only what the main job (`pulumi up` of the local stack) needs: its OS packages, the
#                          engine, the language host, the dynamic-provider shim and oras. The test command and
#                          the other targets run the full setup, which adds the rest (Packer and its plugins,
#                          OpenTofu, actionlint, the Proxmox plugin, the policy pack, fakepve) when first needed.
#        setup.sh --lab    what a lab runner's jobs need (scripts/ci/*.sh): everything but the test-only services.
#        setup.sh --forge  on a builder node made from the builder-node image (forge-install calls it): as --lab plus
#                          the local stack's key, but the tools are the image's (.tools links to /opt/image-factory):
#                          nothing is built, so the node needs no Go.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scope=all
case "${1:-}" in
  --main) scope=main ;;
  --lab) scope=lab ;;
  --forge) scope=forge ;;
  "") ;;
  *) echo "usage: $0 [--main|--lab|--forge]" >&2; exit 2 ;;
esac

say() { printf 'setup: %s\n' "$*"; }
cache_root="${IMAGE_FACTORY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-factory}"

# --- OS packages (Debian) ---------------------------------------------------------------------------------
missing=()
while read -r cmd pkg job _; do
  [[ -z "$cmd" || "$cmd" == \#* ]] && continue
  [[ $scope == main && $job != main ]] && continue
  if [[ "$cmd" == /* ]]; then [[ -e "$cmd" ]] || missing+=("$pkg"); continue; fi # a file, not a command
  command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" || -x "/sbin/$cmd" ]] || missing+=("$pkg")
done < scripts/os-packages.txt
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  install_cmd=(apt-get install -y -q --no-install-recommends "${missing[@]}")
  if [[ $(id -u) -eq 0 ]]; then
    say "installing OS packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${install_cmd[@]}"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    say "installing OS packages with sudo: ${missing[*]}"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -q
    sudo DEBIAN_FRONTEND=noninteractive "${install_cmd[@]}"
  else
    say "missing OS packages: ${missing[*]}"
    say "run this as root, then re-run: sudo apt-get update && sudo ${install_cmd[*]}"
    exit 1
  fi
  # debian's docker-registry package starts a system service on :5000; ours run on demand, on loopback.
  if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl stop docker-registry 2>/dev/null || sudo -n systemctl stop docker-registry 2>/dev/null || true
  fi
fi

# --- foreign-architecture chroots (Raspberry Pi images) ---------------------------------------------------
# qemu-user-static registers qemu-aarch64 with binfmt_misc ("F": the kernel keeps the interpreter open, so a
# chroot needs no copy of it). A container may start without binfmt_misc mounted; mount it when we may.
if [[ $(id -u) -eq 0 && ! -e /proc/sys/fs/binfmt_misc/register ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || say "binfmt_misc cannot be mounted here: Raspberry Pi images cannot be customised on this machine"
fi
if [[ $(id -u) -eq 0 && -e /proc/sys/fs/binfmt_misc/register && ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] && command -v update-binfmts >/dev/null; then
  update-binfmts --enable qemu-aarch64 2>/dev/null || update-binfmts --import qemu-aarch64 2>/dev/null || true
fi
# The Pi builder reads a base image's root file system with fuse2fs inside its build namespace: /dev/fuse must exist
# (Debian makes it 0666 when the module is loaded). A machine that has not loaded it yet gets it when we may.
if [[ $(id -u) -eq 0 && ! -e /dev/fuse ]]; then
  modprobe fuse 2>/dev/null || say "/dev/fuse is missing and the fuse module cannot be loaded here: Raspberry Pi images cannot be built on this machine"
fi

# --- npm packages -----------------------------------------------------------------------------------------
# npm ci only when the lockfile changed since the last install; the npm cache is the per-user one of the factory.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f node_modules/.image-factory-lock || "$(cat node_modules/.image-factory-lock)" != "$lock_sum" ]]; then
  say "npm ci"
  npm ci --no-audit --no-fund --cache "$cache_root/npm" --prefer-offline
  echo "$lock_sum" > node_modules/.image-factory-lock
fi
if [[ $scope != main && -f policy/package-lock.json ]]; then
  plock=$(sha256sum policy/package-lock.json | cut -d' ' -f1)
  if [[ ! -f policy/node_modules/.image-factory-lock || "$(cat policy/node_modules/.image-factory-lock)" != "$plock" ]]; then
    say "npm ci (policy pack)"
    (cd policy && npm ci --no-audit --no-fund --cache "$cache_root/npm" --prefer-offline)
    echo "$plock" > policy/node_modules/.image-factory-lock
  fi
fi

# --- engine and tools from Go modules ---------------------------------------------------------------------
if [[ $scope == forge ]]; then
  [[ -x .tools/bin/pulumi ]] || { say "--forge: .tools/bin has no pulumi: this checkout's tools come from the builder-node image (forge-install links them)"; exit 1; }
elif [[ $scope == main ]]; then
  bash tools/build.sh pulumi pulumi-language-nodejs pulumi-resource-pulumi-nodejs oras
else
  bash tools/build.sh
fi

# --- the proxmoxve resource plugin, installed where the engine looks for it by version -------------------------
# PULUMI_HOME is the checkout's (scripts/env.sh); the version is the one the npm SDK @muhlba91/pulumi-proxmoxve asks for.
[[ $scope == main ]] || (
  source scripts/env.sh
  version=$(node -p 'require("@muhlba91/pulumi-proxmoxve/package.json").pulumi.version')
  plugin=.tools/plugins/pulumi-resource-proxmoxve
  installed="$PULUMI_HOME/plugins/resource-proxmoxve-v$version/pulumi-resource-proxmoxve"
  if [[ -x "$plugin" ]] && ! cmp -s "$plugin" "$installed"; then
    say "installing the proxmoxve plugin v$version into $PULUMI_HOME/plugins"
    pulumi plugin rm resource proxmoxve "$version" --yes >/dev/null 2>&1 || true
    pulumi plugin install resource proxmoxve "$version" --file "$plugin" >/dev/null
  fi
)

# --- Proxmox VE API for the tests (fakepve) ----------------------------------------------------------------
# fakepve is AGPL-3.0-or-later: a test-only service, so it lives in the ignored .tools/fakepve virtualenv, is never
# vendored and never goes into an image. test/fakepve/launch.py (ours) starts it with a token and TLS.
fakepve_req='fakepve[crypto]==0.5.0'
if [[ $scope == all ]] && [[ ! -x .tools/fakepve/bin/python || "$(cat .tools/fakepve/.requirement 2>/dev/null)" != "$fakepve_req" ]]; then
  say "installing $fakepve_req into .tools/fakepve (test-only Proxmox VE API)"
  rm -rf .tools/fakepve
  python3 -m venv .tools/fakepve || { say "python3 -m venv failed: install python3-venv (apt-get install python3-venv) and re-run"; exit 1; }
  .tools/fakepve/bin/pip install -q --disable-pip-version-check --cache-dir "$cache_root/pip" "$fakepve_req"
  echo "$fakepve_req" > .tools/fakepve/.requirement
fi

# --- bootstrap key for the local stack --------------------------------------------------------------------
if [[ $scope != lab && ! -f .cache/local-ssh/id_ed25519 ]]; then
  mkdir -p .cache/local-ssh
  ssh-keygen -q -t ed25519 -N "" -C "image-factory-local" -f .cache/local-ssh/id_ed25519
  say "made the local stack's bootstrap key .cache/local-ssh/id_ed25519"
fi
say "ready"
