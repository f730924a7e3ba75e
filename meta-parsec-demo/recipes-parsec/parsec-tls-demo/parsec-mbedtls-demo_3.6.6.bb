SUMMARY = "Mbed TLS ssl_client1 and ssl_server for the Parsec-enabled TLS demo"
DESCRIPTION = "Mbed TLS 3.6 LTS programs for the Parsec TLS demo: ssl_server serves a \
               small page on port 4433; ssl_client1 performs the handshake with its \
               asymmetric operations (import the server's public key, verify each \
               signature, destroy the key) delegated to the Parsec service through the \
               Parsec secure-element driver."
HOMEPAGE = "https://${PARSEC_DEMO_REPOSITORY}"
BUGTRACKER = "https://${PARSEC_DEMO_REPOSITORY}/issues"
SECTION = "console/network"
LICENSE = "Apache-2.0 | GPL-2.0-or-later"
LIC_FILES_CHKSUM = "file://LICENSE;md5=379d5819937a6c2f1ef1630d341e026d"
CVE_PRODUCT = "arm:mbed_tls"

DEPENDS += "parsec-se-driver protobuf-c"

require parsec-mbedtls-source.inc

# The patches (in this order) and mbedtls-demo.config are also what the host and dev-image
# builds apply: host/parsec_demo/native_build.py reads them from this recipe.
SRC_URI = "${MBEDTLS_SRC_URI} \
           file://0001-psa-define-the-primary-secure-element-key-location.patch \
           file://0002-pk-verify-RSA-and-ECDSA-signatures-with-temporary-ke.patch \
           file://0003-ssl_client1-take-the-server-address-register-the-Par.patch \
           file://0004-programs-link-ssl_client1-with-the-Parsec-SE-driver.patch \
           file://mbedtls-demo.config \
           "
SRCREV = "${MBEDTLS_SRCREV}"

S = "${WORKDIR}/git"

inherit cmake python3native

EXTRA_OECMAKE = "-DENABLE_TESTING=OFF \
                 -DMBEDTLS_FATAL_WARNINGS=ON \
                 -DUSE_SHARED_MBEDTLS_LIBRARY=OFF \
                 -DPARSEC_SE_DRIVER_LIBRARIES='${STAGING_LIBDIR}/libparsec-se-driver.a;protobuf-c' \
                 "

do_configure:prepend() {
    apply_mbedtls_demo_config ${S}
}

do_compile() {
    cmake_runcmake_build --target ssl_client1 ssl_server ssl_server2
}

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/programs/ssl/ssl_client1 ${D}${bindir}/ssl_client1
    install -m 0755 ${B}/programs/ssl/ssl_server ${D}${bindir}/ssl_server
    # ssl_server2 serves other certificates: the validation suite's negative tests use it.
    install -m 0755 ${B}/programs/ssl/ssl_server2 ${D}${bindir}/ssl_server2
}

# Target programs and libraries only: no native or SDK variants.
BBCLASSEXTEND = ""
