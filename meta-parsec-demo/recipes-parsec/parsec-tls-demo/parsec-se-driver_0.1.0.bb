SUMMARY = "Parsec secure-element driver for Mbed TLS 3.6"
DESCRIPTION = "A PSA secure-element driver (HAL version 5) whose keys live in the Parsec \
               service: import, generate, destroy, export public key, sign and verify \
               become Parsec wire protocol requests over the service's Unix socket."
HOMEPAGE = "${PARSEC_DEMO_HOMEPAGE}"
SECTION = "libs"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=2af4fb66de15f87c886345ce793e5c18"
CVE_PRODUCT = "parsec-se-driver"

DEPENDS += "protobuf-c protobuf-c-native"

require parsec-mbedtls-source.inc

# The driver's sources (target/parsec-se-driver) and the Parsec .proto contracts it must agree
# with (contracts/parsec, which the service is generated from as well), both from the
# project's repository at one revision (conf/layer.conf); Mbed TLS only for its headers with
# the demo configuration (the driver must see the same psa_key_attributes_t as the programs).
SRC_URI = "file://mbedtls-demo.config \
           ${MBEDTLS_SRC_URI};destsuffix=mbedtls;name=mbedtls \
           ${PARSEC_DEMO_GIT_URI};destsuffix=parsec-demo;name=project \
           "
SRCREV_mbedtls = "${MBEDTLS_SRCREV}"
SRCREV_project = "${PARSEC_DEMO_SRCREV}"
SRCREV_FORMAT = "mbedtls_project"

S = "${WORKDIR}/parsec-demo/target/parsec-se-driver"

inherit cmake pkgconfig python3native

EXTRA_OECMAKE = "-DMBEDTLS_INCLUDE_DIR=${WORKDIR}/mbedtls/include -DBUILD_TESTING=OFF \
                 -DPARSEC_CONTRACTS_DIR=${WORKDIR}/parsec-demo/contracts/parsec"

do_configure:prepend() {
    apply_mbedtls_demo_config ${WORKDIR}/mbedtls
}

# A static library and its header: the programs that use the driver link it in.
ALLOW_EMPTY:${PN} = "1"

# Target programs and libraries only: no native or SDK variants.
BBCLASSEXTEND = ""
