SUMMARY = "Container image of the Parsec TLS demo's client"
DESCRIPTION = "ssl_client1 with the Parsec SE driver and the shared libraries it loads, as an \
               OCI image (meta-virtualization's image-oci). parsec-tls-demo-image carries it \
               as an OCI archive that podman loads under PARSEC_DEMO_CLIENT_IMAGE:TAG; the \
               client reaches the Parsec socket through a bind mount of /run/parsec and the \
               server through the host's network."
HOMEPAGE = "${PARSEC_DEMO_HOMEPAGE}"
SECTION = "images"
LICENSE = "MIT"
# An image is no product of its own in the CVE database: its packages are checked.
CVE_PRODUCT = ""

require parsec-demo-client-container.inc

IMAGE_FSTYPES = "container oci"
inherit image image-oci

# Only the client and what it loads: no shell, no package manager, no locales, no
# recommendations; built for the machine's kernel (no linux-dummy needed).
IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
NO_RECOMMENDATIONS = "1"
IMAGE_CONTAINER_NO_DUMMY = "1"
IMAGE_INSTALL = "parsec-mbedtls-demo"

OCI_IMAGE_TAG = "${PARSEC_DEMO_CLIENT_TAG}"
# No entrypoint: the command is the client (podman run IMAGE ssl_client1 SERVER replaces it).
OCI_IMAGE_ENTRYPOINT = ""
OCI_IMAGE_ENTRYPOINT_ARGS = "${PARSEC_DEMO_CLIENT_CMD}"
OCI_IMAGE_WORKINGDIR = "${PARSEC_DEMO_CLIENT_WORKDIR}"
# Not root: the container's own uid, hence its own Parsec application (see the .inc).
OCI_IMAGE_RUNTIME_UID = "${PARSEC_DEMO_CLIENT_UID}"
OCI_IMAGE_ENV_VARS = "PATH=${PARSEC_DEMO_CLIENT_PATH}"

# The container's file list (files/client-container.files, which the toolkit's dev image
# follows too): each program listed must be in the rootfs, each directory is made.
PARSEC_DEMO_CLIENT_FILES := "${THISDIR}/files/client-container.files"
do_rootfs[file-checksums] += "${PARSEC_DEMO_CLIENT_FILES}:True"
ROOTFS_POSTPROCESS_COMMAND += "parsec_demo_client_container_files;"
parsec_demo_client_container_files[doc] = "Checks the container's programs and makes its directories"
parsec_demo_client_container_files() {
    grep -v -e '^#' -e '^$' ${PARSEC_DEMO_CLIENT_FILES} | while read -r path; do
        case "$path" in
            */) install -d ${IMAGE_ROOTFS}$path ;;
            *) [ -x ${IMAGE_ROOTFS}$path ] || bbfatal "the client container has no $path" ;;
        esac
    done
}
