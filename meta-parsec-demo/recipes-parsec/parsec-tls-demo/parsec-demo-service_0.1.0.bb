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

# files/parsec_demo is the toolkit of this repository (a link to tools/parsec_demo); the
# contracts are the driver's (one copy of the .proto files).
SRC_URI = "file://parsec_demo/ \
           file://parsec-se-driver/protobuf/ \
           file://parsec-demo-service/ \
           "

S = "${WORKDIR}"

inherit systemd

SYSTEMD_SERVICE:${PN} = "parsec-demo.service"

do_compile() {
    install -d ${B}/generated
    protoc -I${S}/parsec-se-driver/protobuf --python_out=${B}/generated \
        ${S}/parsec-se-driver/protobuf/*.proto
}

do_install() {
    install -d ${D}${libdir}/parsec-demo/protobuf ${D}${sysconfdir}/parsec \
        ${D}${systemd_system_unitdir} ${D}${bindir}
    cp -R --no-preserve=ownership ${S}/parsec_demo ${D}${libdir}/parsec-demo/
    find ${D}${libdir}/parsec-demo -name __pycache__ -prune -exec rm -rf {} +
    install -m 0644 ${B}/generated/*.py ${D}${libdir}/parsec-demo/protobuf/
    install -m 0644 ${S}/parsec-demo-service/parsec-demo.service ${D}${systemd_system_unitdir}/
    install -m 0600 ${S}/parsec-demo-service/config.toml ${D}${sysconfdir}/parsec/config.toml
    install -m 0755 ${S}/parsec-demo-service/parsec-tool ${D}${bindir}/parsec-tool
}

FILES:${PN} += "${libdir}/parsec-demo"
RDEPENDS:${PN} = "python3-core python3-cryptography python3-json python3-logging \
                  python3-protobuf python3-sqlite3 python3-threading python3-tomllib"
RCONFLICTS:${PN} = "parsec-service parsec-tool"

# Target programs and libraries only: no native or SDK variants.
BBCLASSEXTEND = ""
