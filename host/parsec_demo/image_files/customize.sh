#!/bin/sh
# mmdebstrap customize hook of the dev image ($1 = the root directory). The environment names
# the inputs, prepared by parsec_demo.image_build:
#   PD_MBEDTLS_SRC  Mbed TLS sources with the layer's patches and configuration applied
#   PD_DRIVER_SRC   the Parsec SE driver (target/parsec-se-driver)
#   PD_SERVICE_SRC  the layer's parsec-demo-service/files (unit, config, parsec-tool)
#   PD_TARGET_PACKAGE  the parsec_service Python package (the service, its RSE link, parsec-tool)
#   PD_CONTRACTS    the Parsec .proto contracts
#   PD_SSH_PUBKEY   the public key that may log in as root
#   PD_BUILD_ONLY   packages needed only to build, removed at the end
#   PD_JOBS         parallel build jobs
set -eu
root="$1"
src=/usr/src/parsec-demo
step() { echo "[image] $*"; }

step "building ssl_client1, ssl_server, ssl_server2, parsec_client_key, cert_write and the Parsec SE driver in the image"
mkdir -p "$root$src"
cp -a "$PD_MBEDTLS_SRC" "$root$src/mbedtls"
cp -a "$PD_DRIVER_SRC" "$root$src/parsec-se-driver"
cp -a "$PD_CONTRACTS" "$root$src/parsec-contracts"
chroot "$root" sh -eu -c "
    cd $src
    cmake -S parsec-se-driver -B build/driver -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
        -DMBEDTLS_INCLUDE_DIR=$src/mbedtls/include >/dev/null
    cmake --build build/driver -j$PD_JOBS >/dev/null
    cmake -S mbedtls -B build/mbedtls -DENABLE_TESTING=OFF -DMBEDTLS_FATAL_WARNINGS=ON \
        -DCMAKE_BUILD_TYPE=Release \
        '-DPARSEC_SE_DRIVER_LIBRARIES=$src/build/driver/libparsec-se-driver.a;protobuf-c' \
        -DPARSEC_SE_DRIVER_SOURCE_DIR=$src/parsec-se-driver >/dev/null
    cmake --build build/mbedtls -j$PD_JOBS \
        --target ssl_client1 ssl_server ssl_server2 parsec_client_key cert_write >/dev/null
    install -m 0755 build/mbedtls/programs/ssl/ssl_client1 build/mbedtls/programs/ssl/ssl_server \
        build/mbedtls/programs/ssl/ssl_server2 build/mbedtls/programs/ssl/parsec_client_key \
        build/mbedtls/programs/x509/cert_write /usr/bin/
"

step "installing the parsec-demo service"
site=/usr/lib/python3/dist-packages
mkdir -p "$root/etc/parsec"
cp -a "$PD_TARGET_PACKAGE" "$root$site/parsec_service"
find "$root$site/parsec_service" \( -name __pycache__ -o -name '*_pb2.py' -o -name '.*' \) \
    -prune -exec rm -rf {} +
# The contracts' modules, by the image's protoc; inside the package they import each other
# relatively (the same rewrite as target/build_contracts.py).
chroot "$root" sh -eu -c "
    cd $src/parsec-contracts && protoc -I. --python_out=$site/parsec_service/contracts *.proto
    sed -i -E 's/^import ([a-z_]+_pb2) as /from . import \\1 as /' $site/parsec_service/contracts/*_pb2.py
"
install -m 0644 "$PD_SERVICE_SRC/parsec-demo.service" "$root/etc/systemd/system/parsec-demo.service"
install -m 0644 "$PD_SERVICE_SRC/config.toml" "$root/etc/parsec/config.toml"
install -m 0755 "$PD_SERVICE_SRC/parsec-tool" "$root/usr/bin/parsec-tool"

step "removing the build tools"
# shellcheck disable=SC2086
chroot "$root" apt-get purge -y -qq --auto-remove $PD_BUILD_ONLY >/dev/null
chroot "$root" apt-get clean
rm -rf "$root$src" "$root/var/lib/apt/lists/"*
chroot "$root" python3 -m compileall -q "$site/parsec_service" >/dev/null

step "configuring the machine"
echo parsec-demo > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 parsec-demo\n::1 localhost ip6-localhost\n' > "$root/etc/hosts"
printf '/dev/vda / ext4 defaults,noatime 0 1\n' > "$root/etc/fstab"
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=eth*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\n' \
    > "$root/etc/systemd/network/20-wired.network"
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$PD_SSH_PUBKEY" "$root/root/.ssh/authorized_keys"
# The serial console logs root in by itself, as Yocto test images' empty root password lets
# oeqa's qemurunner do after the boot (a locked root costs it a 120 s wait per run). Only the
# serial console changes (and it starts at once: Type=simple, not Debian's Type=idle, which
# holds the prompt back up to 5 s while boot jobs run): root keeps no password (SSH stays key-only, su stays closed to local
# users); whoever holds the console holds the machine, as with a physical console.
mkdir -p "$root/etc/systemd/system/serial-getty@.service.d"
printf '%s\n' '[Service]' 'ExecStart=' \
    'ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM' \
    'Type=simple' \
    > "$root/etc/systemd/system/serial-getty@.service.d/autologin.conf"
# Seconds matter under TCG: no timers, no VT gettys, no waiting for the network.
chroot "$root" systemctl enable -q systemd-networkd parsec-demo.service
chroot "$root" systemctl mask -q apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    fstrim.timer man-db.timer systemd-networkd-wait-online.service getty@tty1.service \
    systemd-random-seed.service dpkg-db-backup.timer 2>/dev/null || true
ln -sf /dev/null "$root/etc/systemd/system/getty.target.wants/getty@tty1.service" 2>/dev/null || true
# --- boot time: podman's own units. Every boot of a -snapshot machine is its first, so the
# persistent daily auto-update timer fires at once (17.7 s of podman-auto-update.service in
# systemd-analyze blame, under TCG) and podman-restart.service (11.7 s) looks for containers
# with a restart policy; the demo has neither, and both took CPU from sshd while it started.
chroot "$root" systemctl mask -q podman-auto-update.timer podman-auto-update.service \
    podman-restart.service 2>/dev/null || true
# Debian enables podman's API service at boot (1.8 s of CPU beside sshd's start, then resident);
# the demo uses the podman command, and an API client still gets the service on demand from
# podman.socket.
chroot "$root" systemctl disable -q podman.service
# Early units the machine does not need, each a process or a mount under TCG: modules loaded
# ahead of need (DRM, EFI pstore, device mapper, loop, configfs), the debug, tracing, hugepage
# and configfs mounts, binfmt, network settings from the kernel command line, a remount of the
# root the kernel mounted read-write already, system users the image build created.
chroot "$root" systemctl mask -q modprobe@drm.service modprobe@efi_pstore.service \
    modprobe@dm_mod.service modprobe@loop.service modprobe@configfs.service \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    dev-hugepages.mount systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
    systemd-network-generator.service systemd-remount-fs.service systemd-sysusers.service \
    2>/dev/null || true
# Generators for what the machine has not got (encrypted, integrity and verity volumes, GPT
# auto-discovery, hibernation, SysV scripts, rc.local, offline updates), each a process at every
# boot and daemon-reload: masked by /dev/null links. fstab, getty (the serial console's login),
# debug and run (kernel command line options) stay.
mkdir -p "$root/etc/systemd/system-generators"
for generator in cryptsetup gpt-auto hibernate-resume integritysetup veritysetup sysv rc-local \
    system-update; do
    ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-$generator-generator"
done
# Drivers udev would load for hardware QEMU emulates and the machine does not use: KVM (no
# nested virtualization) and the PC's IDE controller (the disk is virtio).
cat > "$root/etc/modprobe.d/parsec-demo.conf" <<'EOF2'
blacklist kvm
blacklist kvm_amd
blacklist kvm_intel
blacklist ata_piix
blacklist ata_generic
blacklist pata_acpi
EOF2
# The network interface keeps the kernel's name (eth0; systemd's documented switch: 99-default.link
# masked). udev's rename to ens2 queues a "move" event behind the whole coldplug, and
# systemd-networkd waited for it, 3 s under TCG, before asking for the DHCP address SSH needs.
ln -sf /dev/null "$root/etc/systemd/network/99-default.link"
# sshd listens on every address, so it need not wait for network.target: it starts beside
# systemd-networkd (the machine's unit, less that one ordering).
sed 's/^After=network.target /After=/' "$root/lib/systemd/system/ssh.service" \
    > "$root/etc/systemd/system/ssh.service"
grep -q '^After=auditd.service$' "$root/etc/systemd/system/ssh.service"
# --- end of boot time
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
touch "$root/etc/machine-id"
