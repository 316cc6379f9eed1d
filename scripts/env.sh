# shellcheck shell=bash
# Offline settings for the Pulumi engine and our tools; sourced by the scripts, the Makefile and the tests.
_if_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export IMAGE_FACTORY_ROOT="$_if_root"
export PATH="$_if_root/.tools/bin:$_if_root/node_modules/.bin:$PATH"
# metadata=skip: the file backend then writes no .attrs sidecar files, whose non-atomic rewrite (gocloud fileblob
# setAttrs: truncate, then write) made a StackReference to the stack being updated fail with "failed to load
# checkpoint: EOF" when it read one in between.
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$_if_root/.pulumi-state?metadata=skip}"
# Content-keyed caches (Go, npm, built tools, Debian packages, base images, test fixtures) live outside the
# checkout, so a fresh clone starts warm; override with IMAGE_FACTORY_CACHE.
export IMAGE_FACTORY_CACHE="${IMAGE_FACTORY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-factory}"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# Type checking happens in the tests; at deploy time ts-node only transpiles.
export PULUMI_NODEJS_TRANSPILE_ONLY=true
# Keep the CLI's own state (plugins, credentials, workspace files) inside the checkout.
export PULUMI_HOME="${PULUMI_HOME:-$_if_root/.cache/pulumi-home}"
mkdir -p "$_if_root/.pulumi-state" "$PULUMI_HOME"
unset _if_root
# Packer: plugins come from tools/build.sh (installed as `packer init` would), never from the network.
export PACKER_PLUGIN_PATH="${PACKER_PLUGIN_PATH:-$IMAGE_FACTORY_ROOT/.tools/packer-plugins}"
export PACKER_CHECKPOINT_DISABLE=1
export PACKER_CACHE_DIR="${PACKER_CACHE_DIR:-$IMAGE_FACTORY_ROOT/.cache/packer}"
