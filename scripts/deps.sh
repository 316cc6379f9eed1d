#!/usr/bin/env bash
# Reports the tools each build target needs, with versions (FR-12). Read-only: never installs anything.
# Usage: scripts/deps.sh [target...]   targets: engine qcow2 validate oci release proxmox evidence services
#                                               boot-test packer iso pi bench workflows consumers all (default: all)
# Exit status: 0 when every required tool of the requested targets is present, 1 otherwise (naming them).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.tools/bin:$root/node_modules/.bin:$PATH:/usr/sbin:/sbin"

# target: required tools | optional tools. Files some targets need are checked below (FILES).
declare -A REQUIRED=(
  [engine]="node npm pulumi pulumi-language-nodejs pulumi-resource-pulumi-nodejs"
  [qcow2]="qemu-img mmdebstrap unshare mkfs.ext4 grub-mkimage sfdisk ansible-playbook"
  [validate]="qemu-img debugfs"
  [oci]="oras"
  [release]="node"
  [proxmox]="node"
  [evidence]="sha256sum"
  [services]="node docker-registry"
  [boot-test]="qemu-system-x86_64 cloud-localds ssh ssh-keygen"
  [packer]="packer qemu-system-x86_64 qemu-img ansible-playbook xorriso ssh-keygen debugfs"
  [iso]="xorriso cpio gzip"
  [pi]="qemu-img sfdisk unshare fuse2fs dumpe2fs mkfs.ext4 debugfs mcopy qemu-aarch64-static xz ansible-playbook"
  [bench]="sha256sum curl"
  [workflows]="actionlint"
  [consumers]="node ansible-playbook"
  [vm]="qemu-img mmdebstrap unshare mkfs.ext4 grub-mkimage sfdisk ansible-playbook debugfs"
  [builder-node]="packer qemu-system-x86_64 qemu-img ansible-playbook xorriso ssh-keygen debugfs"
)
declare -A OPTIONAL=(
  [engine]="go"
  [qcow2]="qemu-system-x86_64"
  [validate]=""
  [oci]=""
  [release]=""
  [proxmox]=""
  [evidence]="gpg"
  [services]="htpasswd"
  [boot-test]=""
  [packer]=""
  [iso]="genisoimage"
  [pi]="mcopy mkfs.vfat"
  [bench]="hyperfine"
  [workflows]=""
  [consumers]="tofu terraform"
  [vm]="packer qemu-system-x86_64"
  [builder-node]=""
)
declare -A FILES=(
  [iso]="/usr/lib/ISOLINUX/isolinux.bin /usr/lib/ISOLINUX/isohdpfx.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 /usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/linux"
  [pi]="/proc/sys/fs/binfmt_misc/qemu-aarch64"
)
ORDER=(engine qcow2 validate oci release proxmox evidence services boot-test packer iso pi bench workflows consumers vm builder-node)

version_of() {
  local t=$1 out
  case "$t" in
    pulumi) out=$(pulumi version 2>/dev/null) ;;
    pulumi-language-nodejs) out=$(pulumi-language-nodejs -version 2>/dev/null) ;;
    pulumi-resource-pulumi-nodejs) out="(shim for @pulumi/pulumi/cmd/dynamic-provider)" ;;
    oras) out=$(oras version 2>/dev/null | head -1) ;;
    go) out=$(go version 2>/dev/null) ;;
    mmdebstrap|debootstrap) out=$(dpkg-query -W -f='${Version}' "$t" 2>/dev/null) ;;
    mkfs.ext4|debugfs) out=$(dpkg-query -W -f='e2fsprogs ${Version}' e2fsprogs 2>/dev/null) ;;
    grub-mkimage) out=$(grub-mkimage --version 2>/dev/null) ;;
    sfdisk) out=$(sfdisk --version 2>/dev/null) ;;
    ansible-playbook) out=$(ansible-playbook --version 2>/dev/null | head -1) ;;
    docker-registry) out=$(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null) ;;
    htpasswd) out=$(dpkg-query -W -f='apache2-utils ${Version}' apache2-utils 2>/dev/null) ;;
    cloud-localds) out=$(dpkg-query -W -f='cloud-image-utils ${Version}' cloud-image-utils 2>/dev/null) ;;
    ssh|ssh-keygen) out=$(ssh -V 2>&1) ;;
    gpg) out=$(gpg --version 2>/dev/null | head -1) ;;
    xorriso) out=$(xorriso -version 2>/dev/null | head -1) ;;
    mcopy) out=$(mcopy --version 2>/dev/null | head -1) ;;
    mkfs.vfat) out=$(dpkg-query -W -f='dosfstools ${Version}' dosfstools 2>/dev/null) ;;
    qemu-aarch64-static) out=$(qemu-aarch64-static --version 2>/dev/null | head -1) ;;
    actionlint) out=$(actionlint -version 2>/dev/null | head -1) ;;
    packer) out=$(packer version 2>/dev/null | head -1) ;;
    tofu|terraform) out=$(TF_CLI_CONFIG_FILE= "$t" version 2>/dev/null | head -1) ;;
    *) out=$("$t" --version 2>/dev/null | head -1) ;;
  esac
  printf '%s' "${out:-present}"
}

targets=("$@")
if ((${#targets[@]} == 0)) || [[ " ${targets[*]} " == *" all "* ]]; then targets=("${ORDER[@]}"); fi

missing=()
for target in "${targets[@]}"; do
  if [[ -z "${REQUIRED[$target]+x}" ]]; then
    echo "deps: unknown target '$target' (known: ${ORDER[*]} all)" >&2
    exit 2
  fi
  printf '%s:\n' "$target"
  for t in ${REQUIRED[$target]}; do
    if command -v "$t" >/dev/null 2>&1; then
      printf '  ok       %-30s %s\n' "$t" "$(version_of "$t")"
    else
      printf '  MISSING  %-30s (required)\n' "$t"
      missing+=("$t")
    fi
  done
  for f in ${FILES[$target]:-}; do
    if [[ -e "$f" ]]; then
      printf '  ok       %-30s\n' "$f"
    else
      printf '  MISSING  %-30s (required: %s)\n' "$f" "$(case $f in */binfmt_misc/*) echo "binfmt registration of qemu-user-static, once per host: with Debian's qemu-user-static and binfmt-support installed, as root update-binfmts --enable qemu-aarch64 (bash scripts/setup.sh does both)";; *) echo "a Debian package; bash scripts/setup.sh installs it";; esac)"
      missing+=("$f")
    fi
  done
  for t in ${OPTIONAL[$target]}; do
    if command -v "$t" >/dev/null 2>&1; then
      printf '  ok       %-30s %s (optional)\n' "$t" "$(version_of "$t")"
    else
      printf '  absent   %-30s (optional)\n' "$t"
    fi
  done
done

if [[ " ${targets[*]} " =~ \ (qcow2|vm|pi)\  ]]; then
  # Issue 35: the rootfs and Pi builders run as root of a user namespace, whoever runs them; one real namespace decides.
  echo "build without root:"
  if [[ -x "$root/node_modules/.bin/ts-node" ]]; then
    (cd "$root" && node -r ts-node/register/transpile-only bin/userns-check.ts) || missing+=("user-namespaces")
  else
    printf '  unknown  %-30s (run bash scripts/setup.sh first: the check is the builder'"'"'s own TypeScript)\n' "user namespaces"
  fi
  if [[ " ${targets[*]} " =~ \ pi\  ]]; then
    # fuse2fs reads the base's root file system inside the namespace: the device must be this user's to open.
    if [[ -r /dev/fuse && -w /dev/fuse ]]; then
      printf '  ok       %-30s\n' "/dev/fuse"
    else
      printf '  MISSING  %-30s (required: fuse2fs reads the Raspberry Pi base image through it; modprobe fuse, and it must be read-write for this user (Debian makes it 0666); in a container pass --device /dev/fuse)\n' "/dev/fuse"
      missing+=("/dev/fuse")
    fi
  fi
fi

if [[ " ${targets[*]} " =~ \ (qcow2|packer|boot-test|vm|builder-node)\  ]]; then
  # FR-11: say how VMs will run (KVM, or TCG with a warning and an estimate), never fail silently.
  bash "$root/scripts/virt-check.sh"
fi

if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "deps: missing required tools: ${missing[*]}" >&2
  echo 'deps: "bash scripts/setup.sh" sets them up (Debian packages, npm packages, tools built from Go modules)' >&2
  exit 1
fi
echo "deps: all required tools present"
