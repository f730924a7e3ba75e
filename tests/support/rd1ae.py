"""The .fvpconf meta-arm's fvpboot writes for Arm's RD-1 AE machine, ``fvp-rd-kronos`` (Arm
Automotive Solutions v1.1, sw-ref-stack's meta-arm-bsp-extras), trimmed, shared by the tests of
the machine runner and of the LAVA jobs made from it. Its keys are meta-arm's; its values are
the machine configuration's: the model FVP_RD_1_AE, the consoles by the names runfvp gives them
(``default`` is the Linux console, ``rse`` the RSE's UART), SSH forwarded from port 2222, and
the files of the deploy directory relative to it."""

from __future__ import annotations

#: The image the RD-1 AE build makes (target baremetal-image; no .rootfs suffix on this machine).
RD1AE_IMAGE = "baremetal-image-fvp-rd-kronos.wic"

#: Its keys and values; the runner's tests put the FVP stand-in in fvp-bindir.
RD1AE_FVPCONF = {
    "provider": "fvp-rd-kronos-native",
    "fvp-bindir": "",
    "exe": "FVP_RD_1_AE",
    "parameters": {
        "css.sysctrl.rse.rom.raw_image": "rse-rom-image.img",
        "css.sysctrl.rse_flashloader.fname": "rse-flash-image.img",
        "ros.board.flashloader0.fname": "ap-flash-image.img",
        "ros.board.virtioblockdevice.image_path": RD1AE_IMAGE,
        "ros.board.virtio_net.enabled": "1",
        "ros.board.virtio_net.hostbridge.userNetworking": "1",
        "ros.board.virtio_net.hostbridge.userNetPorts": "2222=22",
        "css.sysctrl.rse_uart.shutdown_tag": "System shutdown complete",
    },
    "data": ["css.sysctrl.rse.cpu=encrypted_cm_provisioning_bundle_0.bin@0x31000000"],
    "applications": {},
    "terminals": {
        "css.ap_periph.terminal_ns_uart0": "PC Console",
        "css.ap_periph.terminal_sec_uart": "PC Secure Console",
        "css.sysctrl.scp.terminal_uart_scp": "SCP",
        "css.sysctrl.terminal_rse_uart": "RSE",
    },
    "consoles": {
        "default": "terminal_ns_uart0",
        "tf-a": "terminal_sec_uart",
        "scp": "terminal_uart_scp",
        "rse": "terminal_rse_uart",
    },
    "args": ["--simlimit", "3600"],
    "env": {"ARMLMD_LICENSE_FILE": "8224@licenses.lab.internal", "FASTSIM_DISABLE_TA": "0"},
}
#: The files of the deploy directory it names.
RD1AE_FILES = (
    RD1AE_IMAGE,
    "rse-rom-image.img",
    "rse-flash-image.img",
    "ap-flash-image.img",
    "encrypted_cm_provisioning_bundle_0.bin",
)
