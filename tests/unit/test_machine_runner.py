"""The machine runner without a real machine: FVP command lines and consoles against a
stand-in FVP, QEMU command lines from qemuboot.conf and the dev image manifest, port leases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parsec_demo.machine.fvp import FvpConfig, FvpMachine, forward_ssh, fvp_command, strip_telnet
from parsec_demo.machine.lifecycle import BootError
from parsec_demo.machine.ports import allocate_port
from parsec_demo.machine.qemu import QemuConfig, QemuMachine
from support.rd1ae import RD1AE_FVPCONF

STANDIN = Path(__file__).parents[1] / "support" / "fvp_standin.py"


@pytest.fixture
def fvpconf(tmp_path: Path) -> Path:
    bindir = tmp_path / "fvp-bin"
    bindir.mkdir()
    model = bindir / "FVP_RD_1_AE"
    model.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} "$@"\n')
    model.chmod(0o755)
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    path = deploy / "baremetal-image-fvp-rd-kronos.fvpconf"
    path.write_text(json.dumps({**RD1AE_FVPCONF, "fvp-bindir": str(bindir)}))
    return path


def test_fvp_command_line_from_an_fvpconf(fvpconf: Path) -> None:
    config = FvpConfig.load(fvpconf)
    command = fvp_command(config, ssh_port=31337)
    assert command[0] == str(fvpconf.parent.parent / "fvp-bin" / "FVP_RD_1_AE")
    pairs = list(zip(command[1::2], command[2::2], strict=False))
    assert ("--parameter", "ros.board.virtio_net.hostbridge.userNetPorts=31337=22") in pairs
    assert ("--parameter", "css.sysctrl.rse.rom.raw_image=rse-rom-image.img") in pairs
    data = "css.sysctrl.rse.cpu=encrypted_cm_provisioning_bundle_0.bin@0x31000000"
    assert ("--data", data) in pairs
    assert ("--parameter", "css.ap_periph.terminal_ns_uart0.start_telnet=0") in pairs
    assert ("--parameter", "css.sysctrl.terminal_rse_uart.start_telnet=0") in pairs
    assert command[-2:] == ["--simlimit", "3600"]
    assert forward_ssh("2222=22,8080=80", 4000) == "4000=22,8080=80"


def test_an_fvpconf_without_exe_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.fvpconf"
    bad.write_text(json.dumps({"parameters": {}}))
    with pytest.raises(ValueError, match=r"not an \.fvpconf"):
        FvpConfig.load(bad)


def test_telnet_negotiation_is_stripped() -> None:
    assert strip_telnet(bytes([255, 251, 1]) + b"login: " + bytes([255, 241])) == b"login: "


def test_the_runner_boots_a_stand_in_fvp_and_logs_its_consoles(
    fvpconf: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    os.environ["PARSEC_DEMO_SECRET"] = "must not leak"
    try:
        with FvpMachine(FvpConfig.load(fvpconf), run_dir, boot_timeout=30) as machine:
            assert machine.ssh_port is not None
            port = machine.ssh_port.port
            assert set(machine.consoles) == {"default", "tf-a", "scp", "rse"}
            record = json.loads((fvpconf.parent / "standin-record.json").read_text())
    finally:
        del os.environ["PARSEC_DEMO_SECRET"]
    assert record["cwd"] == str(fvpconf.parent), "the FVP runs from the .fvpconf's directory"
    assert record["env"]["ARMLMD_LICENSE_FILE"] == "8224@licenses.lab.internal"
    assert "PARSEC_DEMO_SECRET" not in record["env"], "the environment is isolated"
    assert f"ros.board.virtio_net.hostbridge.userNetPorts={port}=22" in record["argv"]
    default = (run_dir / "default.log").read_text()
    assert "terminal_ns_uart0 up" in default and "parsec-demo login:" in default
    assert "\xff" not in default
    assert "terminal_rse_uart up" in (run_dir / "rse.log").read_text()
    assert "Listening for serial connection" in (run_dir / "fvp.log").read_text()


def test_two_fvps_side_by_side_get_different_ports(fvpconf: Path, tmp_path: Path) -> None:
    config = FvpConfig.load(fvpconf)
    with (
        FvpMachine(config, tmp_path / "a", boot_timeout=30) as first,
        FvpMachine(config, tmp_path / "b", boot_timeout=30) as second,
    ):
        assert first.ssh_port and second.ssh_port
        assert first.ssh_port.port != second.ssh_port.port


def test_an_fvp_that_fails_is_reported_with_its_logs(fvpconf: Path, tmp_path: Path) -> None:
    data = json.loads(fvpconf.read_text())
    data["env"]["STANDIN_FAIL"] = "1"
    fvpconf.write_text(json.dumps(data))
    with pytest.raises(
        BootError, match="the FVP exited with status 3: Error: license checkout failed"
    ) as caught:
        FvpMachine(FvpConfig.load(fvpconf), tmp_path / "run", boot_timeout=30).start()
    assert str(tmp_path / "run" / "fvp.log") in str(caught.value)


@pytest.mark.slow
def test_no_login_prompt_times_out_with_the_console_tail(fvpconf: Path, tmp_path: Path) -> None:
    data = json.loads(fvpconf.read_text())
    data["env"]["STANDIN_NO_LOGIN"] = "1"
    fvpconf.write_text(json.dumps(data))
    with pytest.raises(BootError, match="no login prompt within 2 s") as caught:
        FvpMachine(FvpConfig.load(fvpconf), tmp_path / "run", boot_timeout=2).start()
    assert "terminal_ns_uart0 up" in str(caught.value), "the console tail is shown"


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "parsec_demo", "run-fvp"],
        [str(Path(sys.executable).with_name("run-fvp"))],  # the console script
    ],
    ids=["parsec-demo run-fvp", "run-fvp"],
)
def test_run_fvp_dry_run_prints_the_command(
    command: list[str], fvpconf: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [*command, "--dry-run", "--run-dir", str(tmp_path / "r"), str(fvpconf), "--", "--stat"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1, "the command line, and nothing else"
    assert "FVP_RD_1_AE --parameter" in result.stdout
    assert "userNetPorts=2222=22" not in result.stdout, "a free port replaces 2222"
    assert result.stdout.strip().endswith("--simlimit 3600 --stat")
    assert not (fvpconf.parent / "standin-record.json").exists(), "nothing was started"


QEMUBOOT = """[config_bsp]
deploy_dir_image = {deploy}
image_link_name = core-image-minimal-qemuarm64
image_name = core-image-minimal-qemuarm64-20261127
qb_system_name = qemu-system-aarch64
qb_machine = -machine virt
qb_cpu = -cpu cortex-a57
qb_smp = -smp 4
qb_mem = -m 512
qb_default_kernel = Image
qb_default_fstype = ext4
qb_kernel_cmdline_append = swiotlb=0
qb_rootfs_opt = -drive id=disk0,file=@ROOTFS@,if=none,format=raw
    -device virtio-blk-device,drive=disk0
qb_serial_opt = -device virtio-serial-device -chardev null,id=virtcon
    -device virtconsole,chardev=virtcon
qb_network_device = -device virtio-net-device,netdev=net0,mac=@MAC@
qb_opt_append = -device qemu-xhci -device usb-tablet
"""


def test_qemu_command_line_from_a_yocto_qemuboot_conf(tmp_path: Path) -> None:
    conf = tmp_path / "core-image-minimal-qemuarm64.qemuboot.conf"
    conf.write_text(QEMUBOOT.format(deploy=tmp_path))
    config = QemuConfig.from_qemuboot(conf)
    machine = QemuMachine(config, tmp_path / "run")
    command = machine.command(40404)
    text = " ".join(command)
    assert command[0] == "qemu-system-aarch64"
    assert "-machine virt -cpu cortex-a57" in text and "-m 512 -smp 4" in text
    assert f"-kernel {tmp_path}/Image" in text
    assert f"file={tmp_path}/core-image-minimal-qemuarm64.ext4" in text
    assert "-append root=/dev/vda rw swiotlb=0 ip=dhcp" in text
    assert "hostfwd=tcp:127.0.0.1:40404-:22" in text and "virtio-net-device,netdev=net0" in text
    assert "-device virtio-serial-device,id=vser0" in text
    assert "virtserialport,bus=vser0.0,chardev=rse,name=rse" in text
    assert "-snapshot" in command and "tcg,thread=multi" in text
    assert text.endswith("-device qemu-xhci -device usb-tablet")


def test_port_leases_are_exclusive_and_die_with_their_process() -> None:
    with allocate_port() as first, allocate_port() as second:
        assert first.port != second.port
    script = (
        "from parsec_demo.machine.ports import allocate_port\n"
        "lease = allocate_port()\nprint(lease.port, flush=True)\nimport os; os._exit(0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    port = int(result.stdout)
    import fcntl

    from parsec_demo.machine import ports

    fd = os.open(ports.LOCK_DIR / f"{port}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again: the holder died
    finally:
        os.close(fd)


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs QEMU")
def test_a_qemu_that_cannot_start_is_reported(tmp_path: Path) -> None:
    config = QemuConfig(
        qemu="qemu-system-x86_64", machine=["-machine", "pc"], cpu=[], memory_mb=64, smp=1,
        kernel=tmp_path / "missing-kernel", initrd=None, rootfs_options=[], cmdline="",
    )  # fmt: skip
    with pytest.raises(BootError, match="QEMU exited with status") as caught:
        QemuMachine(config, tmp_path / "run", with_rse=False, boot_timeout=30).start()
    assert "qemu.log" in str(caught.value)
    # The headline quotes QEMU's own reason: the console never saw a line.
    headline = str(caught.value).splitlines()[0]
    assert headline.startswith("boot failed: QEMU exited with status 1: ")
    assert "missing-kernel" in headline
