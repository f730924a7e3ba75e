SUMMARY = "RSE crypto service model of the Parsec TLS demo, for testimage on QEMU machines"
DESCRIPTION = "parsec-demo-rse-model: the parsec-demo project's model of the RSE crypto \
               service (RSE comms embed messages, TF-M crypto calls, a PSA key store), which \
               runs on the build host beside a QEMU machine, as the RSE runs beside the \
               application cores. testimage's QEMU controller of this layer starts it from \
               the native sysroot."
HOMEPAGE = "${PARSEC_DEMO_HOMEPAGE}"
SECTION = "devel/python"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://LICENSE;md5=2af4fb66de15f87c886345ce793e5c18"
CVE_PRODUCT = "parsec-demo-rse-model"

# The build generates the target package's contract modules with protobuf-native's protoc
# (target/build_contracts.py takes it from PROTOC).
DEPENDS += "protobuf-native python3-cryptography-native"

# The project's repository (conf/layer.conf), built as the Python distribution at its top: the
# toolkit (parsec_demo) and the target package (parsec_service), whose RSE link the model uses.
SRC_URI = "${PARSEC_DEMO_GIT_URI}"
SRCREV = "${PARSEC_DEMO_SRCREV}"

S = "${WORKDIR}/git"

inherit python_setuptools_build_meta
inherit_defer native

# pyproject.toml's build requirements pin what a pip build installs (setuptools, and
# grpcio-tools for its protoc); here oe-core's python3-setuptools-native and protobuf-native
# stand in for them, so python3-build's check of those pins is skipped.
PEP517_BUILD_OPTS = "--skip-dependency-check"
export PROTOC = "${STAGING_BINDIR_NATIVE}/protoc"

# Of the distribution's console scripts only the model's works here: the others need the rest
# of the toolkit's dependencies (SSH, pexpect, YAML, protobuf), which are not in the sysroot.
do_install:append() {
    find ${D}${bindir} -type f ! -name parsec-demo-rse-model -delete
    test -x ${D}${bindir}/parsec-demo-rse-model
}

# What the model imports at run time, besides the standard library: cryptography (with cffi).
RDEPENDS:${PN} = "python3-cryptography-native"

# For `oe-run-native parsec-demo-rse-model-native parsec-demo-rse-model`, and for the image's
# do_testimage to depend on, as testimage does on qemu-helper-native's. The task comes from
# native.bbclass, which oelint-adv does not read.
# nooelint: oelint.task.addnotaskbody
addtask addto_recipe_sysroot after do_populate_sysroot before do_build
