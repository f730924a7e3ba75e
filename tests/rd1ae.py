"""The .fvpconf meta-arm's fvpboot writes for the RD-1 AE machine (trimmed), shared by the tests
of the machine runner and of the LAVA jobs made from it."""

from __future__ import annotations

#: Its keys and values; the runner's tests put the FVP stand-in in fvp-bindir.
RD1AE_FVPCONF = {
    "provider": "fvp-rd1-ae-native",
    "fvp-bindir": "",
    "exe": "FVP_RD_1_AE",
    "parameters": {
        "css.sysctrl.rse.intchecker.ICBC_RESET_VALUE": "0x0000011B",
        "soc.pl011_uart0.unbuffered_output": "1",
        "board.virtio_net.hostbridge.userNetworking": "1",
        "board.virtio_net.hostbridge.userNetPorts": "2222=22",
        "board.virtioblockdevice.image_path": "core-image-minimal-fvp-rd1-ae.wic",
    },
    "data": ["css.sysctrl.rse.cpu=rse-rom-image.img@0x11000000"],
    "applications": {"css.sysctrl.rse.cpu": "rse-bl1.axf"},
    "terminals": {"soc.terminal_ns_uart0": "Linux console", "css.sysctrl.rse.terminal_uart": "RSE"},
    "consoles": {"default": "soc.terminal_ns_uart0", "rse": "css.sysctrl.rse.terminal_uart"},
    "args": ["--simlimit", "3600"],
    "env": {"ARMLMD_LICENSE_FILE": "8224@licenses.example"},
}
#: The files of the deploy directory it names.
RD1AE_FILES = ("core-image-minimal-fvp-rd1-ae.wic", "rse-rom-image.img", "rse-bl1.axf")
