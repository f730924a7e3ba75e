SUMMARY = "The Parsec TLS demo's client container, loaded into podman at boot"
DESCRIPTION = "The OCI archive of parsec-demo-client-container and a systemd oneshot that \
               loads it into podman's image store as PARSEC_DEMO_CLIENT_IMAGE:TAG at boot \
               (no registry, no network), so that the demo's client runs in a container."
HOMEPAGE = "${PARSEC_DEMO_HOMEPAGE}"
SECTION = "console/network"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=2af4fb66de15f87c886345ce793e5c18"
CVE_PRODUCT = ""

require parsec-demo-client-container.inc

SRC_URI = "file://LICENSE \
           file://parsec-demo-client-container.service \
           file://load-client-container \
           "
S = "${WORKDIR}"

inherit systemd

# The archive is the container image's deployed OCI tarball (image-oci names it
# <IMAGE_BASENAME>-<OCI_IMAGE_TAG>-oci.tar), for this machine's architecture.
PACKAGE_ARCH = "${MACHINE_ARCH}"
PARSEC_DEMO_CLIENT_OCI = "${DEPLOY_DIR_IMAGE}/parsec-demo-client-container-${PARSEC_DEMO_CLIENT_TAG}-oci.tar"
do_install[depends] += "parsec-demo-client-container:do_image_complete"

do_install() {
    install -d ${D}${datadir}/parsec-demo ${D}${libexecdir}/parsec-demo ${D}${systemd_system_unitdir}
    install -m 0644 ${PARSEC_DEMO_CLIENT_OCI} ${D}${PARSEC_DEMO_CLIENT_ARCHIVE}
    install -m 0755 ${S}/load-client-container ${D}${libexecdir}/parsec-demo/
    sed -e 's|@ARCHIVE@|${PARSEC_DEMO_CLIENT_ARCHIVE}|g' \
        -e 's|@REFERENCE@|${PARSEC_DEMO_CLIENT_IMAGE}:${PARSEC_DEMO_CLIENT_TAG}|g' \
        ${S}/parsec-demo-client-container.service \
        > ${D}${systemd_system_unitdir}/parsec-demo-client-container.service
}

SYSTEMD_SERVICE:${PN} = "parsec-demo-client-container.service"
FILES:${PN} += "${datadir}/parsec-demo"
RDEPENDS:${PN} = "podman"

# A target package only: no native or SDK variants.
BBCLASSEXTEND = ""
