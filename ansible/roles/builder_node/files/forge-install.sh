#!/usr/bin/env bash
# forge-install: puts the image factory on a node made from the builder-node image (NFR-6: rebuild the forge; README
# "Rebuild the forge"). The image already carries the engine and tools (/opt/image-factory/bin), node and npm, the
# Packer plugins and the Proxmox VE resource plugin, all built from the pins of the commit that built the image; this
# fetches the factory's source at one commit and sets the checkout up as scripts/setup.sh would, building nothing.
#
# Usage: forge-install [--dir DIR] [--npm-cache DIR] SOURCE COMMIT
#   SOURCE       the factory's git repository: a URL this node reaches, or a bundle file (git bundle create f.bundle --all)
#   COMMIT       a full commit id or a tag; the checkout is detached there (pin what the lab last gated)
#   --dir        where the checkout goes (default /srv/image-factory/src: the data disk, beside the state and caches)
#   --npm-cache  an npm cache to install the npm packages from without a registry (an offline forge: copy the one
#                scripts/setup.sh filled on another machine, $IMAGE_FACTORY_CACHE/npm)
# Ends with `make deps`: its exit status is this command's. Re-running converges (a new COMMIT moves the checkout).
set -euo pipefail
die() { echo "forge-install: $*" >&2; exit 1; }
say() { echo "forge-install: $*"; }

# Where the image put the kit and where the data disk is mounted; only tests move them.
kit=${IMAGE_FACTORY_KIT:-/opt/image-factory}
srv=${IMAGE_FACTORY_SRV:-/srv}
dir=$srv/image-factory/src
npm_cache=
while (($#)); do
  case $1 in
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --npm-cache) npm_cache=${2:?--npm-cache needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --*) die "unknown option $1 (forge-install --help)" ;;
    *) break ;;
  esac
done
(($# == 2)) || die "usage: forge-install [--dir DIR] [--npm-cache DIR] SOURCE COMMIT (forge-install --help)"
source=$1 commit=$2
[[ -x $kit/bin/pulumi && -x $kit/bin/npm && -d $kit/packer-plugins ]] ||
  die "$kit does not hold the forge kit: this node was not made from the builder-node image with builder_node_forge_kit; in a plain checkout run bash scripts/setup.sh instead"
[[ -z $npm_cache || -d $npm_cache ]] || die "--npm-cache $npm_cache is not a directory"
export PATH="$kit/bin:$PATH"
export IMAGE_FACTORY_CACHE=${IMAGE_FACTORY_CACHE:-$srv/image-factory/cache}

# The factory writes its work, caches, evidence, state and store under /srv as the operator, never as root.
mine() {
  local d
  for d in "$@"; do
    [[ -d $d && -O $d ]] && continue
    if ((EUID == 0)); then install -d "$d"; continue; fi
    [[ ! -e $d ]] && mkdir -p "$d" 2>/dev/null && continue
    sudo -n install -d -o "$(id -u)" -g "$(id -g)" "$d" 2>/dev/null || die "cannot make $d this user's: run as a user with sudo, or as root: install -d -o $(id -un) $d"
  done
}
mine "$srv/image-factory" "$srv/image-factory/work" "$srv/image-factory/cache" "$srv/image-factory/evidence" "$srv/image-factory/state" "$srv/artifacts" "$(dirname "$dir")"

# The source at COMMIT: a first install clones into DIR.partial and renames it (a failed clone leaves no half
# checkout); a later one fetches into the existing checkout and moves it.
if [[ -d $dir/.git ]]; then
  say "fetching $source into $dir"
  git -C "$dir" fetch --quiet --tags "$source" '+refs/heads/*:refs/remotes/forge/*' '+HEAD:refs/remotes/forge/HEAD' || die "cannot fetch from $source"
else
  [[ ! -e $dir ]] || die "$dir exists and is not a git checkout: move it away, or pass --dir"
  say "cloning $source into $dir"
  rm -rf "$dir.partial"
  git clone --quiet --no-checkout "$source" "$dir.partial" || die "cannot clone $source"
  mv "$dir.partial" "$dir"
fi
git -C "$dir" cat-file -e "$commit^{commit}" 2>/dev/null || die "$commit is not a commit of $source (a bundle must hold it: git bundle create f.bundle --all)"
git -C "$dir" -c advice.detachedHead=false checkout --quiet --force --detach "$commit"
say "checkout at $(git -C "$dir" rev-parse HEAD)"
# The tools are the image's: a commit that pins another engine wants a node image built from it (or Go and setup.sh).
want=$(sed -n 's/^PULUMI_VERSION=//p' "$dir/tools/build.sh")
have=$(pulumi version 2>/dev/null || true)
[[ -z $want || $want == "$have" ]] || say "warning: this checkout pins Pulumi $want and the image carries $have: build the builder-node image from this commit (make builder-node), or install Go and run bash scripts/setup.sh --lab in the checkout"

# The tools this image carries, where the checkout's scripts look for what tools/build.sh would have built.
mkdir -p "$dir/.tools"
for t in bin packer-plugins plugins; do ln -sfn "$kit/$t" "$dir/.tools/$t"; done

if [[ -n $npm_cache ]]; then
  say "npm packages from $npm_cache (offline)"
  mkdir -p "$IMAGE_FACTORY_CACHE/npm"
  # A copy the user can write: npm updates its cache's index as it reads it, and a cache from a CD or a stick
  # arrives read-only (npm then reports every package as not cached, ENOTCACHED).
  if [[ $(realpath "$npm_cache") != $(realpath "$IMAGE_FACTORY_CACHE/npm") ]]; then
    cp -R "$npm_cache/." "$IMAGE_FACTORY_CACHE/npm/"
    chmod -R u+w "$IMAGE_FACTORY_CACHE/npm"
  fi
  export npm_config_offline=true
fi
(cd "$dir" && bash scripts/setup.sh --forge)
say "tools:"
(cd "$dir" && make --no-print-directory deps)
say "ready: cd $dir; restore the state backend and secrets, then make preview STACK=<stack> (README \"Rebuild the forge\")"
