#!/usr/bin/env bash
# Runs test files as an ordinary user from a checkout that root set up (issue 35): the tests that build and boot images
# prove that nothing in them needs root. .ci/run prepares the user with --prepare, runs everything else as root with
# `npm test`, then calls this for the build and boot tests.
# Usage (as root, after scripts/setup.sh):
#   bash scripts/test-as-user.sh --prepare <user>            make the user if missing, with a subordinate id range (as
#                                                            useradd gives), in the kvm group on a KVM host, and able
#                                                            to pass through the directories above the checkout
#   bash scripts/test-as-user.sh <user> <test file>... [mocha options]
# The user gets what a developer's own checkout would give it, in places of its own:
#   IMAGE_FACTORY_TEST_DIR    builds and the engine's state (<user's cache>/test-dir), instead of the checkout's .cache
#   IMAGE_FACTORY_CACHE       the per-user cache: $IMAGE_FACTORY_TEST_USER_CACHE, else <root's cache>/users/<user>, so a
#                             CI machine that keeps root's cache keeps this one too
#   PULUMI_HOME               a copy of the checkout's plugins (the engine writes beside them)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[[ $(id -u) -eq 0 ]] || { echo "test-as-user: run this as root (it switches to the test user with setpriv)" >&2; exit 2; }

# Every directory above dir must let others through (a clone under /root does not).
open_path() {
  local d=$1
  while [[ $d != / ]]; do
    [[ $(( 0$(stat -c %a "$d") & 1 )) -eq 1 ]] || { echo "test-as-user: chmod o+x $d (the test user passes through it)"; chmod o+x "$d"; }
    d=$(dirname "$d")
  done
}

if [[ ${1:-} == --prepare ]]; then
  (($# == 2)) || { echo "usage: $0 --prepare <user>" >&2; exit 2; }
  user=$2
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  grep -q "^$user:" /etc/subuid 2>/dev/null || usermod --add-subuids 100000-165535 "$user"
  grep -q "^$user:" /etc/subgid 2>/dev/null || usermod --add-subgids 100000-165535 "$user"
  # On a KVM host the boot gate and Packer want /dev/kvm: its group is the least grant (README "Builds without root").
  if [[ -e /dev/kvm ]] && getent group kvm >/dev/null; then usermod --append --groups kvm "$user"; fi
  open_path "$root"
  exit 0
fi
(($# >= 2)) || { echo "usage: $0 <user> <test file>... [mocha options]  (or: $0 --prepare <user>)" >&2; exit 2; }
user=$1; shift
id "$user" >/dev/null 2>&1 || { echo "test-as-user: no user $user: bash $0 --prepare $user" >&2; exit 2; }
source scripts/env.sh
home=$(getent passwd "$user" | cut -d: -f6)
cache=${IMAGE_FACTORY_TEST_USER_CACHE:-$IMAGE_FACTORY_CACHE/users/$user}
testdir=$cache/test-dir
install -d -o "$user" -g "$user" "$cache" "$testdir" "$testdir/pulumi-home" "$testdir/pulumi-state"
# The user runs the checkout's code, reads its tools and writes its own cache.
open_path "$root"
open_path "$cache"
if [[ -d $PULUMI_HOME/plugins ]]; then
  rm -rf "$testdir/pulumi-home/plugins"
  cp -a "$PULUMI_HOME/plugins" "$testdir/pulumi-home/plugins"
  chown -R "$user:$user" "$testdir/pulumi-home/plugins"
fi
echo "test-as-user: $user (uid $(id -u "$user")) runs $*"
exec setpriv --reuid "$user" --regid "$user" --init-groups \
  env HOME="$home" USER="$user" LOGNAME="$user" XDG_CACHE_HOME="$home/.cache" \
  IMAGE_FACTORY_CACHE="$cache" IMAGE_FACTORY_TEST_DIR="$testdir" PULUMI_HOME="$testdir/pulumi-home" \
  PULUMI_BACKEND_URL="file://$testdir/pulumi-state?metadata=skip" PACKER_CACHE_DIR="$testdir/packer" \
  IMAGE_FACTORY_TEST_BUILD_USER= \
  mocha "$@"
