# On the RD-1 AE FVP the demo uses upstream Parsec with the Trusted Services provider, whose
# backend is the SE-proxy partition and, behind it, the RSE crypto service.
FILESEXTRAPATHS:prepend:fvp-rd-kronos := "${THISDIR}/files:"

SRC_URI:append:fvp-rd-kronos = " file://config-trusted-services.toml"

PACKAGECONFIG:fvp-rd-kronos = "TS"
PARSEC_CONFIG:fvp-rd-kronos = "${WORKDIR}/config-trusted-services.toml"
