SUMMARY = "Mbed TLS ssl_client1 and ssl_server for the Parsec-enabled TLS demo"
DESCRIPTION = "Mbed TLS 3.6 LTS programs for the Parsec TLS demo: ssl_server serves a small \
page on port 4433; ssl_client1 performs the handshake with its asymmetric operations (import \
the server's public key, verify each signature, destroy the key) delegated to the Parsec \
service through the Parsec secure-element driver."
HOMEPAGE = "https://www.trustedfirmware.org/projects/mbed-tls/"
BUGTRACKER = "https://github.com/Mbed-TLS/mbedtls/issues"
SECTION = "console/network"
LICENSE = "Apache-2.0 | GPL-2.0-or-later"
LIC_FILES_CHKSUM = "file://LICENSE;md5=379d5819937a6c2f1ef1630d341e026d"

# The patches and mbedtls-demo.config are also what the host and dev-image builds apply
# (tools/parsec_demo/native_build.py reads this recipe for the pin and the patch order).
SRC_URI = "https://github.com/Mbed-TLS/mbedtls/releases/download/mbedtls-${PV}/mbedtls-${PV}.tar.bz2 \
           file://0001-psa-define-the-primary-secure-element-key-location.patch \
           file://0002-pk-verify-RSA-and-ECDSA-signatures-with-temporary-ke.patch \
           file://0003-ssl_client1-take-the-server-address-register-the-Par.patch \
           file://0004-programs-link-ssl_client1-with-the-Parsec-SE-driver.patch \
           file://mbedtls-demo.config \
           "
SRC_URI[sha256sum] = "8fb65fae8dcae5840f793c0a334860a411f884cc537ea290ce1c52bb64ca007a"

S = "${WORKDIR}/mbedtls-${PV}"

DEPENDS = "parsec-se-driver protobuf-c python3-native"

inherit cmake python3native

EXTRA_OECMAKE = "-DENABLE_TESTING=OFF \
                 -DMBEDTLS_FATAL_WARNINGS=ON \
                 -DUSE_SHARED_MBEDTLS_LIBRARY=OFF \
                 -DPARSEC_SE_DRIVER_LIBRARIES='${STAGING_LIBDIR}/libparsec-se-driver.a;protobuf-c' \
                 "

# Apply the demo configuration (scripts/config.py actions, one per line) to the sources.
do_configure:prepend() {
    grep -v '^[[:space:]]*#' ${WORKDIR}/mbedtls-demo.config | while read -r action option; do
        [ -n "$action" ] || continue
        ${PYTHON} ${S}/scripts/config.py -f ${S}/include/mbedtls/mbedtls_config.h $action $option
    done
}

do_compile() {
    cmake_runcmake_build --target ssl_client1 ssl_server
}

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/programs/ssl/ssl_client1 ${D}${bindir}/ssl_client1
    install -m 0755 ${B}/programs/ssl/ssl_server ${D}${bindir}/ssl_server
}
