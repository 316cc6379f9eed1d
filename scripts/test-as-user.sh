#!/usr/bin/env bash
# Runs test files as an ordinary user from a checkout that root set up (issue 35): the tests that build and boot images
# prove that nothing in them needs root. .ci/run calls it after `npm test` has run everything else as root.
# Usage (as root, after scripts/setup.sh): bash scripts/test-as-user.sh <user> <test file>... [mocha options]
# The user needs a subordinate id range (/etc/subuid, /etc/subgid) and read access to the checkout.
# It gets what a developer's own checkout would give it, in places of its own:
#   IMAGE_FACTORY_TEST_DIR    builds and the engine's state (<user's cache>/test-dir), instead of the checkout's .cache
#   IMAGE_FACTORY_CACHE       the per-user cache: $IMAGE_FACTORY_TEST_USER_CACHE, else <root's cache>/users/<user>, so a
#                             CI machine that keeps root's cache keeps this one too
#   PULUMI_HOME               a copy of the checkout's plugins (the engine writes beside them)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
(($# >= 2)) || { echo "usage: $0 <user> <test file>... [mocha options]" >&2; exit 2; }
user=$1; shift
[[ $(id -u) -eq 0 ]] || { echo "test-as-user: run this as root (it switches to $user with setpriv)" >&2; exit 2; }
id "$user" >/dev/null 2>&1 || { echo "test-as-user: no user $user: useradd --create-home $user (useradd gives it a subordinate id range)" >&2; exit 2; }
source scripts/env.sh
home=$(getent passwd "$user" | cut -d: -f6)
cache=${IMAGE_FACTORY_TEST_USER_CACHE:-$IMAGE_FACTORY_CACHE/users/$user}
testdir=$cache/test-dir
install -d -o "$user" -g "$user" "$cache" "$testdir" "$testdir/pulumi-home" "$testdir/pulumi-state"
# The user runs the checkout's code and reads its tools: every directory above those it uses must let others through.
for d in "$root" "$cache"; do
  while [[ $d != / ]]; do
    [[ $(( 0$(stat -c %a "$d") & 1 )) -eq 1 ]] || { echo "test-as-user: chmod o+x $d (the test user passes through it)"; chmod o+x "$d"; }
    d=$(dirname "$d")
  done
done
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
