#!/usr/bin/env bash
# Builds the pinned engine and tools from Go modules into .tools/bin (see tools/README.md for the pins).
# Idempotent: each tool carries a stamp of its inputs (go.mod, go.sum, sources, Go version, flags); a tool
# whose stamp matches is not rebuilt, so a warm run takes well under a second.
# Usage: tools/build.sh [tool...]   (default: all; tools: pulumi pulumi-language-nodejs
#                                     pulumi-resource-pulumi-nodejs oras actionlint tofu packer
#                                     packer-plugin-qemu packer-plugin-ansible packer-plugin-proxmox
#                                     pulumi-resource-proxmoxve versitygw)
set -euo pipefail

tools_dir=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$tools_dir")
bin="$root/.tools/bin"
stamps="$root/.tools/stamps"
mkdir -p "$bin" "$stamps"

# Caches live in a per-user directory outside the checkout (IMAGE_FACTORY_CACHE, default
# ~/.cache/image-factory), so a fresh clone (CI clones afresh every run) reuses the module cache, the build
# cache and the built binaries; -modcacherw keeps the module cache deletable.
cache_root="${IMAGE_FACTORY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-factory}"
export GOMODCACHE="${GOMODCACHE_OVERRIDE:-$cache_root/go-mod}"
export GOCACHE="${GOCACHE_OVERRIDE:-$cache_root/go-build}"
# Built binaries, content-keyed by their stamp: a fresh clone whose tool inputs match copies instead of builds.
built="$cache_root/tools"
export GOFLAGS="-mod=readonly -modcacherw -buildvcs=false"
export CGO_ENABLED=0

command -v go >/dev/null || { echo "tools/build.sh: go is not on PATH; install Go 1.26 (https://go.dev/dl/ or your package manager)" >&2; exit 1; }

PULUMI_VERSION=v3.259.0
ORAS_VERSION=1.3.0

stamp_of() { # dir, flags...: hash of the module's inputs and the build flags
  local dir=$1; shift
  # Sources of this module only: a subdirectory with its own go.mod is another module (tools/oras, the plugin, …),
  # and a change there must not rebuild this one.
  { go version; printf '%s\n' "$@"; find "$dir" -maxdepth 1 -name 'go.*' -type f -print0 | sort -z | xargs -0 cat;
    find "$dir" -mindepth 1 -type d -exec test -e '{}/go.mod' \; -prune -o -name '*.go' -not -path '*/testdata/*' -print0 |
      sort -z | xargs -0 -r cat; } | sha256sum | cut -d' ' -f1
}

build() { # name, module dir, package, ldflags, [tags], [command run before compiling], [output dir]
  local name=$1 dir=$2 pkg=$3 ldflags=$4 tags=${5:-} before=${6:-}
  local bin=${7:-$bin}
  local want; want=$(stamp_of "$dir" "$pkg" "$ldflags" "$tags")
  if [[ -x "$bin/$name" && -f "$stamps/$name" && "$(cat "$stamps/$name")" == "$want" ]]; then
    echo "tools: $name up to date"
    return
  fi
  local keyed="$built/$name-$want"
  if [[ -x "$keyed" ]]; then
    cp -f "$keyed" "$bin/$name.partial" && mv -f "$bin/$name.partial" "$bin/$name"
    echo "$want" > "$stamps/$name"
    echo "tools: $name from the cache ($keyed)"
    return
  fi
  echo "tools: building $name ($pkg)"
  local start=$SECONDS
  [[ -z "$before" ]] || $before
  (cd "$dir" && go build -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$bin/$name.partial" "$pkg")
  mkdir -p "$built" && rm -f "$built/$name"-* && cp -f "$bin/$name.partial" "$keyed.partial" && mv -f "$keyed.partial" "$keyed"
  mv -f "$bin/$name.partial" "$bin/$name"
  echo "$want" > "$stamps/$name"
  echo "tools: built $name in $((SECONDS - start))s"
}

want_tool() { [[ ${#selected[@]} -eq 0 ]] || [[ " ${selected[*]} " == *" $1 "* ]]; }
selected=("$@")

if want_tool pulumi; then
  build pulumi "$tools_dir" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" osusergo,grpcnotrace
fi
if want_tool pulumi-language-nodejs; then
  build pulumi-language-nodejs "$tools_dir" ./cmd/pulumi-language-nodejs \
    "-s -w -X main.version=$PULUMI_VERSION+image-factory" osusergo,grpcnotrace
fi
if want_tool pulumi-resource-pulumi-nodejs; then
  install -m 0755 "$tools_dir/shims/pulumi-resource-pulumi-nodejs" "$bin/pulumi-resource-pulumi-nodejs"
fi
if want_tool oras; then
  build oras "$tools_dir/oras" oras.land/oras/cmd/oras \
    "-s -w -X oras.land/oras/internal/version.BuildMetadata=image-factory -X oras.land/oras/internal/version.GitTreeState=clean"
fi
if [[ -d "$tools_dir/actionlint" ]] && want_tool actionlint; then
  build actionlint "$tools_dir/actionlint" github.com/rhysd/actionlint/cmd/actionlint "-s -w"
fi
if [[ -d "$tools_dir/tofu" ]] && want_tool tofu; then
  build tofu "$tools_dir/tofu" github.com/opentofu/opentofu/cmd/tofu "-s -w -X github.com/opentofu/opentofu/version.dev=no"
fi
# versitygw (Apache-2.0): an S3-compatible gateway over a local directory, for the rehearsal's state backend (the labs
# keep their state in a self-managed S3 backend). Test-only: never shipped in an image.
if [[ -d "$tools_dir/versitygw" ]] && want_tool versitygw; then
  build versitygw "$tools_dir/versitygw" github.com/versity/versitygw/cmd/versitygw "-s -w"
fi
if [[ -d "$tools_dir/packer" ]] && want_tool packer; then
  # VersionPrerelease is cleared so `packer version` prints the release, not "1.9.4-dev".
  build packer "$tools_dir/packer" github.com/hashicorp/packer "-s -w -X github.com/hashicorp/packer/version.VersionPrerelease="
fi

# The Proxmox VE resource plugin: bpg's Terraform provider bridged under the npm SDK's tokens. A bridged provider
# runs only with the schema and bridge metadata that its tfgen step writes, so those are generated here, right
# before the plugin is compiled, and embedded into it (they are not committed: they follow from the pins).
proxmoxve_schema() {
  local dir="$tools_dir/pulumi-resource-proxmoxve" out
  build pulumi-tfgen-proxmoxve "$dir" ./cmd/pulumi-tfgen-proxmoxve "-s -w"
  out=$(mktemp -d)
  if ! "$bin/pulumi-tfgen-proxmoxve" schema --out "$out" >"$out/tfgen.log" 2>&1; then
    cat "$out/tfgen.log" >&2; rm -rf "$out"; echo "tools/build.sh: pulumi-tfgen-proxmoxve failed (log above)" >&2; return 1
  fi
  cp "$out/schema.json" "$out/bridge-metadata.json" "$dir/cmd/pulumi-resource-proxmoxve/"
  rm -rf "$out"
}
# The plugin is not put on PATH: the engine would take it as an "ambient" plugin whatever version the SDK asks
# for (and warn); scripts/setup.sh installs it into PULUMI_HOME as resource-proxmoxve-v8.6.0 instead, where the
# engine finds it by the version the npm SDK requires, with automatic plugin acquisition off.
if [[ -d "$tools_dir/pulumi-resource-proxmoxve" ]] && want_tool pulumi-resource-proxmoxve; then
  mkdir -p "$root/.tools/plugins"
  build pulumi-resource-proxmoxve "$tools_dir/pulumi-resource-proxmoxve" ./cmd/pulumi-resource-proxmoxve "-s -w" "" proxmoxve_schema "$root/.tools/plugins"
fi

# Packer plugins are separate binaries. They are installed the way `packer init` would install them
# (<plugin path>/github.com/hashicorp/<name>/packer-plugin-<name>_v<version>_x5.0_<os>_<arch> plus a _SHA256SUM
# file) so that each template's `required_plugins` pin resolves offline and `packer init` has nothing to fetch.
plugins="$root/.tools/packer-plugins"
install_plugin() { # name; the version is the one pinned in tools/packer-plugin-<name>/go.mod
  local name=$1
  local module=github.com/hashicorp/packer-plugin-$name
  local version; version=$(cd "$tools_dir/packer-plugin-$name" && go list -m -f '{{.Version}}' "$module"); version=${version#v}
  build "packer-plugin-$name" "$tools_dir/packer-plugin-$name" "$module" \
    "-s -w -X $module/version.VersionPrerelease="
  local api; api=$("$bin/packer-plugin-$name" describe | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).api_version))')
  local dir="$plugins/github.com/hashicorp/$name"
  local file="$dir/packer-plugin-${name}_v${version}_${api}_$(go env GOOS)_$(go env GOARCH)"
  mkdir -p "$dir"
  if ! cmp -s "$bin/packer-plugin-$name" "$file"; then
    rm -f "$dir"/packer-plugin-"${name}"_*
    cp "$bin/packer-plugin-$name" "$file.partial" && mv -f "$file.partial" "$file"
    sha256sum "$file" | cut -d' ' -f1 > "${file}_SHA256SUM"
  fi
}
for plugin in qemu ansible proxmox; do
  if [[ -d "$tools_dir/packer-plugin-$plugin" ]] && want_tool "packer-plugin-$plugin"; then install_plugin "$plugin"; fi
done
