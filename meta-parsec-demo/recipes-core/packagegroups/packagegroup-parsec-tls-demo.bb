SUMMARY = "The Parsec-enabled TLS demo"
DESCRIPTION = "ssl_client1 and ssl_server with the Parsec SE driver, the Parsec service of \
               the machine (the project's service on QEMU machines, upstream Parsec with the \
               Trusted Services provider where PARSEC_DEMO_SERVICE says so), podman, and the \
               client's container (parsec-demo-client-container), loaded into podman at boot."
HOMEPAGE = "https://${PARSEC_DEMO_REPOSITORY}"
BUGTRACKER = "https://${PARSEC_DEMO_REPOSITORY}/issues"
SECTION = "console/network"
LICENSE = "MIT"

PACKAGE_ARCH = "${MACHINE_ARCH}"

inherit packagegroup

# The FVP configuration (kas/fvp-rd1-ae.yml) sets "parsec-service parsec-tool".
PARSEC_DEMO_SERVICE ?= "parsec-demo-service"

RDEPENDS:${PN} = "${PARSEC_DEMO_SERVICE} iproute2 parsec-demo-client-container-load \
                  parsec-mbedtls-demo podman procps"
