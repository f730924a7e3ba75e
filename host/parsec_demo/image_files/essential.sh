#!/bin/sh
# mmdebstrap essential hook of the dev image ($1 = the root directory), before the kernel and
# the other packages are installed: the configuration of tiny-initramfs, Debian's minimal
# initramfs (one static init, no udev, no scripts), which the kernel's postinst hook then uses.
# A QEMU machine's root is ext4 (built into Debian's cloud kernel) on a virtio block device:
# it needs the virtio PCI and MMIO transports and the block driver. The network and console
# drivers go in too, so that the network interface and the RSE's virtio-serial port exist when
# systemd starts: left to udev's coldplug they were loaded 4 s later, and SSH (slirp forwards to
# the DHCP address) waited for them. Dependencies come from modules.dep; no detection of the
# build host's modules, no microcode.
set -eu
root="$1"
mkdir -p "$root/etc/tiny-initramfs"
cat > "$root/etc/tiny-initramfs/tiny-initramfs.conf" <<'CONF'
DEBUG=no
MICROCODE=no
AUTO_MODULES=no
INCLUDE_MODULES="virtio_pci,virtio_mmio,virtio_blk,virtio_net,virtio_console"
CONF
