#!/bin/sh
# mmdebstrap essential hook of the dev image ($1 = the root directory), before the kernel and
# the other packages are installed: an initramfs with just what a QEMU virt machine needs to
# find its root disk, so that it is generated once, small and quickly.
set -eu
root="$1"
mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' > "$root/etc/initramfs-tools/conf.d/parsec-demo"
printf '%s\n' virtio_pci virtio_mmio virtio_blk virtio_net virtio_console ext4 \
    > "$root/usr/share/initramfs-tools/modules.d/parsec-demo"
