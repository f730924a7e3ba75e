SUMMARY = "Mbed TLS ssl_client1 and ssl_server for the Parsec-enabled TLS demo"
DESCRIPTION = "Mbed TLS 3.6 LTS programs for the Parsec TLS demo: ssl_server serves a \
               small page on port 4433; ssl_client1 performs the handshake (TLS 1.2, or \
               TLS 1.3 on request) with its asymmetric operations (import the server's \
               public key, verify each signature, destroy the key, and for mutual TLS \
               sign with its own key) delegated to the Parsec service through the Parsec \
               secure-element driver. parsec_client_key makes the client's key pair in \
               the secure element and a CSR signed there; cert_write issues certificates."
HOMEPAGE = "${PARSEC_DEMO_HOMEPAGE}"
SECTION = "console/network"
# Mbed TLS, and parsec_client_key (the Parsec SE driver's tool, MIT).
LICENSE = "(Apache-2.0 | GPL-2.0-or-later) & MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=379d5819937a6c2f1ef1630d341e026d \
                    file://${PARSEC_SE_DRIVER_SOURCE}/LICENSE;md5=2af4fb66de15f87c886345ce793e5c18"
CVE_PRODUCT = "arm:mbed_tls"

DEPENDS += "parsec-se-driver protobuf-c"

require parsec-mbedtls-source.inc

# The patches (in this order) and mbedtls-demo.config are also what the host and dev-image
# builds apply: host/parsec_demo/native_build.py reads them from this recipe. The Parsec SE
# driver's sources (its parsec_client_key tool is built here, beside the programs) come from
# the project's repository at the same revision as the driver's recipe (conf/layer.conf).
SRC_URI = "${MBEDTLS_SRC_URI};name=mbedtls \
           file://0001-psa-define-the-primary-secure-element-key-location.patch \
           file://0002-pk-verify-RSA-and-ECDSA-signatures-with-temporary-ke.patch \
           file://0003-ssl_client1-take-the-server-address-register-the-Par.patch \
           file://0004-programs-link-ssl_client1-with-the-Parsec-SE-driver.patch \
           file://0005-psa-keep-the-failure-to-save-a-secure-element-key.patch \
           file://mbedtls-demo.config \
           ${PARSEC_DEMO_GIT_URI};destsuffix=parsec-demo;name=project \
           "
SRCREV_mbedtls = "${MBEDTLS_SRCREV}"
SRCREV_project = "${PARSEC_DEMO_SRCREV}"
SRCREV_FORMAT = "mbedtls_project"
PARSEC_SE_DRIVER_SOURCE = "${WORKDIR}/parsec-demo/target/parsec-se-driver"

S = "${WORKDIR}/git"

inherit cmake python3native

EXTRA_OECMAKE = "-DENABLE_TESTING=OFF \
                 -DMBEDTLS_FATAL_WARNINGS=ON \
                 -DUSE_SHARED_MBEDTLS_LIBRARY=OFF \
                 -DPARSEC_SE_DRIVER_LIBRARIES='${STAGING_LIBDIR}/libparsec-se-driver.a;protobuf-c' \
                 -DPARSEC_SE_DRIVER_SOURCE_DIR=${PARSEC_SE_DRIVER_SOURCE} \
                 "

do_configure:prepend() {
    apply_mbedtls_demo_config ${S}
}

do_compile() {
    cmake_runcmake_build --target ssl_client1 ssl_server ssl_server2 parsec_client_key cert_write
}

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/programs/ssl/ssl_client1 ${D}${bindir}/ssl_client1
    install -m 0755 ${B}/programs/ssl/ssl_server ${D}${bindir}/ssl_server
    # ssl_server2 serves other certificates: the validation suite's negative tests use it.
    install -m 0755 ${B}/programs/ssl/ssl_server2 ${D}${bindir}/ssl_server2
    # Mutual TLS: the client's key pair in the secure element, and its certificate.
    install -m 0755 ${B}/programs/ssl/parsec_client_key ${D}${bindir}/parsec_client_key
    install -m 0755 ${B}/programs/x509/cert_write ${D}${bindir}/cert_write
}

# Target programs and libraries only: no native or SDK variants.
BBCLASSEXTEND = ""
