SUMMARY = "Image of the Parsec-enabled TLS demo"
DESCRIPTION = "A console image with the Parsec TLS demo (ssl_client1, ssl_server, the \
               Parsec service of the machine, podman) and what testimage needs to \
               validate it over SSH."
HOMEPAGE = "https://parallaxsecond.github.io/parsec-book/"
BUGTRACKER = "https://github.com/parallaxsecond/parsec/issues"
SECTION = "images"
LICENSE = "MIT"
# An image is no product of its own in the CVE database: its packages are checked.
CVE_PRODUCT = ""

inherit core-image

IMAGE_FEATURES += "ssh-server-openssh"
IMAGE_INSTALL += "packagegroup-parsec-tls-demo"

# Room for the container image the validation suite builds on the target.
IMAGE_ROOTFS_EXTRA_SPACE = "524288"
