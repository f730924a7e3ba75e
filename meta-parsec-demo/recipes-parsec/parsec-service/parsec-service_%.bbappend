# On the RD-1 AE FVP the demo uses upstream Parsec with the Trusted Services provider, whose
# backend is the SE-proxy partition and, behind it, the RSE crypto service.
FILESEXTRAPATHS:prepend:fvp-rd1-ae := "${THISDIR}/files:"

SRC_URI:append:fvp-rd1-ae = " file://config-trusted-services.toml"

PACKAGECONFIG:fvp-rd1-ae = "TS"
PARSEC_CONFIG:fvp-rd1-ae = "${WORKDIR}/config-trusted-services.toml"
