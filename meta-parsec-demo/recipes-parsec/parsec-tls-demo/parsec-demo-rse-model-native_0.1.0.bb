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

# What the model imports at run time, besides the standard library: the target package's RSE
# link, and cryptography (with cffi).
DEPENDS += "parsec-demo-service-native python3-cryptography-native"

# The project's repository (conf/layer.conf): the model is the Python distribution in
# rse-model/, built alone. It answers the service with that service's own RSE link (RSE comms
# framing, TF-M crypto packing, PSA numbers), which parsec-demo-service-native installs.
SRC_URI = "${PARSEC_DEMO_GIT_URI}"
SRCREV = "${PARSEC_DEMO_SRCREV}"

S = "${WORKDIR}/git"

inherit python_setuptools_build_meta
inherit_defer native

PEP517_SOURCE_PATH = "${S}/rse-model"
# rse-model/pyproject.toml's build requirement pins the setuptools a pip build installs; here
# oe-core's python3-setuptools-native stands in for it, so python3-build's check is skipped.
PEP517_BUILD_OPTS = "--skip-dependency-check"

RDEPENDS:${PN} = "parsec-demo-service-native python3-cryptography-native"

# For `oe-run-native parsec-demo-rse-model-native parsec-demo-rse-model`, and for the image's
# do_testimage to depend on, as testimage does on qemu-helper-native's. The task comes from
# native.bbclass, which oelint-adv does not read.
# nooelint: oelint.task.addnotaskbody
addtask addto_recipe_sysroot after do_populate_sysroot before do_build
