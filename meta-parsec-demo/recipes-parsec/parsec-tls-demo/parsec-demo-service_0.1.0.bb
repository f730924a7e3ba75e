SUMMARY = "Parsec-wire-compatible service of the Parsec TLS demo"
DESCRIPTION = "The parsec-demo project's Parsec service (wire protocol 1.0, Trusted Service \
               provider id 4) for machines without an RSE: its backend is the RSE crypto \
               service model beside a QEMU machine, reached through the virtio-serial port \
               /dev/virtio-ports/rse. With parsec-tool's commands."
HOMEPAGE = "https://parallaxsecond.github.io/parsec-book/"
BUGTRACKER = "https://github.com/parallaxsecond/parsec/issues"
SECTION = "console/network"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://parsec-demo-service/LICENSE;md5=2af4fb66de15f87c886345ce793e5c18"
CVE_PRODUCT = "parsec-demo-service"

DEPENDS += "protobuf-native"

# files/parsec_service is the repository's target package (a link to target/parsec_service)
# and files/parsec-contracts its Parsec contracts (a link to contracts/parsec): the service and
# nothing of the host toolkit.
SRC_URI = "file://parsec_service/ \
           file://parsec-contracts/ \
           file://parsec-demo-service/ \
           "

S = "${WORKDIR}"

inherit systemd python3-dir

SYSTEMD_SERVICE:${PN} = "parsec-demo.service"

# The contracts' modules; inside the package they import each other relatively (the same
# rewrite as the repository's target/build_contracts.py).
do_compile() {
    rm -rf ${B}/generated
    install -d ${B}/generated
    protoc -I${S}/parsec-contracts --python_out=${B}/generated ${S}/parsec-contracts/*.proto
    sed -i -E 's/^import ([a-z_]+_pb2) as /from . import \1 as /' ${B}/generated/*_pb2.py
}

do_install() {
    install -d ${D}${PYTHON_SITEPACKAGES_DIR} ${D}${sysconfdir}/parsec \
        ${D}${systemd_system_unitdir} ${D}${bindir}
    cp -R --no-preserve=ownership ${S}/parsec_service ${D}${PYTHON_SITEPACKAGES_DIR}/
    find ${D}${PYTHON_SITEPACKAGES_DIR}/parsec_service \( -name __pycache__ -o -name '*_pb2.py' \
        -o -name '.*' \) -prune -exec rm -rf {} +
    install -m 0644 ${B}/generated/*_pb2.py \
        ${D}${PYTHON_SITEPACKAGES_DIR}/parsec_service/contracts/
    install -m 0644 ${S}/parsec-demo-service/parsec-demo.service ${D}${systemd_system_unitdir}/
    install -m 0600 ${S}/parsec-demo-service/config.toml ${D}${sysconfdir}/parsec/config.toml
    install -m 0755 ${S}/parsec-demo-service/parsec-tool ${D}${bindir}/parsec-tool
}

FILES:${PN} += "${PYTHON_SITEPACKAGES_DIR}/parsec_service"
RDEPENDS:${PN} = "python3-asyncio python3-core python3-crypt python3-io python3-json python3-logging \
                  python3-netclient python3-protobuf python3-sqlite3 python3-threading \
                  python3-tomllib"
RCONFLICTS:${PN} = "parsec-service parsec-tool"

# Target programs and libraries only: no native or SDK variants.
BBCLASSEXTEND = ""
