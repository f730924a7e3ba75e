SUMMARY = "The Parsec-enabled TLS demo"
DESCRIPTION = "ssl_client1 and ssl_server with the Parsec SE driver, the Parsec service of \
               the machine (the project's service on QEMU machines, upstream Parsec with the \
               Trusted Services provider where PARSEC_DEMO_SERVICE says so), podman, and the \
               client's container (parsec-demo-client-container), loaded into podman at boot."
HOMEPAGE = "${PARSEC_DEMO_HOMEPAGE}"
SECTION = "console/network"
LICENSE = "MIT"

PACKAGE_ARCH = "${MACHINE_ARCH}"

inherit packagegroup

# The RD-1 AE configuration (kas/rd1ae-overlay.yml) sets "parsec-service parsec-tool":
# upstream Parsec with the Trusted Services provider.
PARSEC_DEMO_SERVICE ?= "parsec-demo-service"

RDEPENDS:${PN} = "${PARSEC_DEMO_SERVICE} iproute2 parsec-demo-client-container-load \
                  parsec-mbedtls-demo podman procps"
