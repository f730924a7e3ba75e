SUMMARY = "Image of the Parsec-enabled TLS demo"
DESCRIPTION = "A console image with the Parsec TLS demo (ssl_client1, ssl_server, the \
               Parsec service of the machine, podman with the client's container) and what \
               testimage needs to validate it over SSH."
HOMEPAGE = "${PARSEC_DEMO_HOMEPAGE}"
SECTION = "images"
LICENSE = "MIT"
# An image is no product of its own in the CVE database: its packages are checked.
CVE_PRODUCT = ""

inherit core-image

IMAGE_FEATURES += "ssh-server-openssh"
IMAGE_INSTALL += "packagegroup-parsec-tls-demo"

# Room for podman's copy of the client's container (loaded at boot from its OCI archive).
IMAGE_ROOTFS_EXTRA_SPACE = "524288"

# testimage on a QEMU machine: the layer's controller (lib/oeqa/controllers/parsec_demo_qemu.py)
# starts the RSE model beside the machine, parsec-demo-rse-model from this recipe's native
# sysroot, which these dependencies fill as testimage's own do for runqemu (qemu-helper-native).
PARSEC_DEMO_TESTIMAGE_DEPENDS = ""
PARSEC_DEMO_TESTIMAGE_DEPENDS:qemuall = "parsec-demo-rse-model-native:do_populate_sysroot \
                                         parsec-demo-rse-model-native:do_addto_recipe_sysroot"
do_testimage[depends] += "${PARSEC_DEMO_TESTIMAGE_DEPENDS}"
