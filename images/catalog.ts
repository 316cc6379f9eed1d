// The base-image catalog: data only. Each entry pins its upstream files by sha256 and size, and says how to turn
// them into what builds consume. Entries are versioned: change a pin, and bump the version (or the manager
// notices the drift and redoes exactly the affected files).
import type { ManagedImageSpec } from "../lib/baseImages/cache";

export const catalog: ManagedImageSpec[] = [
    {
        // The seed's zero-configuration Alpine guest: the AWS "tiny" cloud disk (a fixed VHD) plus a netboot kernel
        // and initramfs for direct kernel boot. Digests as pinned by Castra's catalog.
        // Where this departs from seed 003's profile, and why, from Alpine's own image builder (alpine-cloud-images,
        // scripts/setup): for BIOS firmware `make_filesystem` puts the ext4 file system on the whole disk
        // (root_dev=$DEVICE, no partition table; only UEFI images get a GPT with the root as partition 2) and
        // extlinux boots it, so the root is /dev/vda, not the seed's /dev/vda1 (which does not exist on this disk;
        // the seed's own "rename to rootfs.ext4" says the same: the disk is a file system). The seed's
        // `vmlinuz-virt` is right and this entry is not yet: the same script sets extlinux's default=virt, so the
        // image's /lib/modules are linux-virt's, and the LTS kernel here finds no modules beyond its initramfs once
        // booted. Switching needs the 3.22.2 netboot vmlinuz-virt's and initramfs-virt's sha256 and size from
        // Alpine's published checksums, which cannot be fetched on this network; see issue 36's note.
        id: "alpine-minimal",
        version: "v1",
        description: "Alpine Linux 3.22.2 x86_64, BIOS tiny cloud disk, with the LTS kernel for direct boot",
        artifacts: [
            {
                name: "rootfs",
                url: "https://dl-cdn.alpinelinux.org/alpine/v3.22/releases/cloud/aws_alpine-3.22.2-x86_64-bios-tiny-r0.vhd",
                sha256: "8f58945cd972f31b8a7e3116d2b33cdb4298e6b3c0609c0bfd083964678afffb",
                size: 127_926_784,
                filename: "aws_alpine-3.22.2-x86_64-bios-tiny-r0.vhd",
                transforms: [{ kind: "StripVhdFooter" }, { kind: "QemuImgConvert", from: "raw", to: "qcow2" }, { kind: "Rename", to: "rootfs.qcow2" }],
            },
            {
                name: "kernel",
                url: "https://dl-cdn.alpinelinux.org/alpine/v3.22/releases/x86_64/netboot/vmlinuz-lts",
                sha256: "6eb498e1898d138e8a493eae901a580ddc3c1c105bd9ddc84cb9f820855958e7",
                size: 13_624_320,
                filename: "vmlinuz-lts",
                transforms: [],
            },
            {
                name: "initrd",
                url: "https://dl-cdn.alpinelinux.org/alpine/v3.22/releases/x86_64/netboot/initramfs-lts",
                sha256: "e82c5c2d4a6372f25e53fcbad4defe7b10bbf8be766b6e571291fd5ebcf9e383",
                size: 26_335_797,
                filename: "initramfs-lts",
                transforms: [],
            },
        ],
        qemu: {
            machine: "q35",
            kernel: "kernel",
            initrd: "initrd",
            append: "console=ttyS0 root=/dev/vda modules=virtio_pci,virtio_blk,virtio_console,virtio_net,ext4 quiet",
            disk: { artifact: "rootfs", interface: "virtio", format: "qcow2" },
        },
    },
    {
        // FR-4: the base of the Raspberry Pi images, the last Raspberry Pi OS Lite (64-bit) release on Bookworm.
        // Upstream publishes the digest (the .sha256 beside the image), not the size.
        id: "raspios-bookworm-arm64-lite",
        version: "2025-05-13",
        description: "Raspberry Pi OS Lite (64-bit), Bookworm, 2025-05-13 release: the flashable disk image, decompressed",
        artifacts: [
            {
                name: "image",
                url: "https://downloads.raspberrypi.com/raspios_lite_arm64/images/raspios_lite_arm64-2025-05-13/2025-05-13-raspios-bookworm-arm64-lite.img.xz",
                sha256: "62d025b9bc7ca0e1facfec74ae56ac13978b6745c58177f081d39fbb8041ed45",
                filename: "2025-05-13-raspios-bookworm-arm64-lite.img.xz",
                transforms: [{ kind: "Decompress", format: "xz" }, { kind: "Rename", to: "raspios.img" }],
            },
        ],
        qemu: { machine: "raspi3b", disk: { artifact: "image", interface: "virtio", format: "raw" } },
    },
];
