# shellcheck shell=bash
# The Debian packages each entry point needs (installed by ensure_apt when missing).

# Building Mbed TLS 3.6 and the Parsec SE driver, and fetching Debian's Mbed TLS source.
BUILD_PACKAGES=(cmake gcc make patch bzip2 pkg-config libprotobuf-c-dev protobuf-c-compiler
                apt ca-certificates)
# Running the host-mode demo: a private network namespace for ssl_server's port.
DEMO_PACKAGES=(iproute2 util-linux)
# The test suite: gdb counts local verifications to prove there are none; chromium renders
# the validation report.
TEST_PACKAGES=(gdb chromium)
# Building and booting the dev image.
VM_PACKAGES=(mmdebstrap qemu-system-x86 qemu-utils e2fsprogs openssh-client zstd)
# arm64 dev images (user-mode emulation for the build, and the arm64 system emulator).
ARM64_PACKAGES=(qemu-system-arm qemu-user-static binfmt-support arch-test)
