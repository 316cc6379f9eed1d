#!/usr/bin/env bash
# FR-11: how VMs (boot tests, Packer's qemu builder) will run on this machine, and why. Read-only.
# Checks /dev/kvm, the CPU's vmx/svm flag, nested virtualisation, and then proves KVM by starting a real guest
# kernel under it for a few seconds: some hosts (nested setups, sandboxes) accept KVM_CREATE_VM yet never run a
# guest, and a build that silently hangs there for 20 minutes is worse than one that says "TCG" up front.
# Usage: scripts/virt-check.sh [--json]   Exit 0 always (TCG works everywhere); the verdict is in the output.
# IMAGE_FACTORY_ACCEL=kvm|tcg overrides the verdict. The probe result is cached per boot and qemu version.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
json=0; [[ "${1:-}" == "--json" ]] && json=1
probe_kernel=/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64/linux

flags=$(grep -m1 -o -w -E 'vmx|svm' /proc/cpuinfo 2>/dev/null | head -1)
nested=""
for f in /sys/module/kvm_intel/parameters/nested /sys/module/kvm_amd/parameters/nested; do
  [[ -r $f ]] && nested=$(cat "$f")
done
kvm_dev=no; [[ -r /dev/kvm && -w /dev/kvm ]] && kvm_dev=yes
qemu_version=$(qemu-system-x86_64 --version 2>/dev/null | head -1)

accel=tcg; reason=""
if [[ -n "${IMAGE_FACTORY_ACCEL:-}" ]]; then
  accel=$IMAGE_FACTORY_ACCEL; reason="set by IMAGE_FACTORY_ACCEL"
elif [[ -z "$qemu_version" ]]; then
  reason="qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
elif [[ $kvm_dev == no ]]; then
  reason="/dev/kvm is missing or not writable: enable VT-x/AMD-V in the firmware (and nested virtualisation when this is a VM), load kvm_intel/kvm_amd, and add the user to the kvm group"
elif [[ ! -r $probe_kernel ]]; then
  accel=kvm; reason="/dev/kvm is usable (not proven with a guest: install debian-installer-12-netboot-amd64 for the probe kernel)"
else
  cache="$root/.cache/virt-probe"
  key=$(printf '%s|%s|%s' "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" "$qemu_version" "$(uname -r)" | sha256sum | cut -c1-16)
  if [[ -f "$cache/$key" ]]; then
    read -r accel reason < "$cache/$key"
  else
    mkdir -p "$cache"
    serial=$(mktemp)
    timeout 12 qemu-system-x86_64 -accel kvm -m 256 -display none -nodefaults -no-user-config -no-reboot \
      -serial "file:$serial" -kernel "$probe_kernel" -append "console=ttyS0 panic=-1" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 40); do grep -q 'Linux version' "$serial" 2>/dev/null && break; sleep 0.25; done
    if grep -q 'Linux version' "$serial" 2>/dev/null; then
      accel=kvm; reason="a guest kernel started under KVM"
    else
      accel=tcg; reason="/dev/kvm opens but a guest kernel did not start under KVM within 10s (nested virtualisation not really available)"
    fi
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$serial"
    printf '%s %s\n' "$accel" "$reason" > "$cache/$key"
  fi
fi

if ((json)); then
  node -e 'const [accel,reason,flags,nested,kvm,qemu]=process.argv.slice(1);console.log(JSON.stringify({accel,reason,cpuFlag:flags||null,nested:nested||null,kvmDevice:kvm==="yes",qemu:qemu||null}))' \
    "$accel" "$reason" "$flags" "$nested" "$kvm_dev" "$qemu_version"
else
  echo "virtualisation: cpu flag: ${flags:-none (no VT-x/AMD-V visible)}; nested: ${nested:-unknown}; /dev/kvm: $kvm_dev"
  if [[ $accel == kvm ]]; then
    echo "virtualisation: qemu runs with KVM ($reason)"
  else
    echo "virtualisation: WARNING: qemu runs under TCG, software emulation: $reason."
    echo "virtualisation: expect roughly 5-10x longer boots (measured here: ~45s to SSH) and Packer builds (builder-node ~10 min instead of ~2)"
  fi
fi
