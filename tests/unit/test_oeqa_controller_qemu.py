"""The layer's testimage controller for QEMU (``ParsecDemoQemuTarget``), with poky's real oeqa.

Run when ``PARSEC_DEMO_POKY`` names a poky (scarthgap) checkout. Each test drives the
controller in a fresh interpreter with poky's ``meta/lib``, ``bitbake/lib`` and the layer's
``lib`` on ``sys.path``, as testimage has them (this test session may hold the toolkit's oeqa
stand-in under the same module names): found by name and constructed the way
``testimage_main`` does, with the RSE model (``parsec-demo-rse-model``) found on PATH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest

from parsec_demo.image_build import write_qemuboot
from parsec_demo.validate.oe_core import provide_qmp
from support.dev_image_files import make_image

POKY = os.environ.get("PARSEC_DEMO_POKY")
pytestmark = pytest.mark.skipif(not POKY, reason="PARSEC_DEMO_POKY names no poky checkout")

#: What every test's interpreter starts with: the oeqa path, a logger that keeps what the
#: controller and qemurunner log, testimage's keyword arguments for a controller.
PREAMBLE = """
import json, logging, os, sys
from pathlib import Path
from parsec_demo.validate import oe_core

poky, work = Path(sys.argv[1]), Path(sys.argv[2])
oe_core.import_oeqa(poky)
from oeqa.core.target.qemu import OEQemuTarget
from oeqa.runtime.context import OERuntimeTestContextExecutor
from oeqa.controllers import parsec_demo_qemu as controller

records = []

class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())

log = logging.getLogger("controller-test")
log.setLevel(1)
log.addHandler(Keep())
log.debug2 = lambda msg, *args, **kwargs: log.log(9, msg, *args, **kwargs)


def make(**changes):
    kwargs = {
        "machine": "parsec-demo-dev-amd64", "rootfs": str(work / "missing.rootfs.ext4"),
        "tmpdir": str(work / "tmp"), "dir_image": str(work), "display": None,
        "kernel": str(work / "vmlinuz"), "boottime": 60,
        "bootlog": str(work / "testimage" / "qemu_boot_log.20261203000000"), "kvm": False,
        "slirp": True, "dump_dir": str(work / "dump"), "serial_ports": 1, "ovmf": False,
        "tmpfsdir": None, "powercontrol_cmd": None, "powercontrol_extra_args": "",
        "serialcontrol_cmd": None, "serialcontrol_extra_args": "",
        "testimage_dump_monitor": "",
    }
    kwargs.update(changes)
    return OERuntimeTestContextExecutor.getTarget(
        "ParsecDemoQemuTarget", log, "127.0.0.1", "10.0.2.2", **kwargs
    )


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


out = {}
"""


def in_poky(body: str, work: Path, path: str | None = None) -> dict[str, Any]:
    """Run ``body`` after the preamble in a fresh interpreter; the ``out`` it fills."""
    assert POKY is not None
    work.mkdir(parents=True, exist_ok=True)
    (work / "testimage").mkdir(exist_ok=True)
    (work / "tmp").mkdir(exist_ok=True)
    script = PREAMBLE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    env = dict(os.environ)
    env["PATH"] = path if path is not None else model_path()
    result = subprocess.run(
        [sys.executable, "-c", script, POKY, str(work)],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return outcome


def model_path() -> str:
    """PATH with runqemu (poky's scripts) and this toolkit's RSE model, as a build has them."""
    assert POKY is not None
    scripts = sysconfig.get_path("scripts")
    assert Path(scripts, "parsec-demo-rse-model").exists(), "the toolkit's console script"
    return os.pathsep.join([str(Path(POKY) / "scripts"), scripts, os.defpath])


def test_testimage_finds_and_constructs_it_with_its_arguments(tmp_path: Path) -> None:
    out = in_poky(
        """
        target = make()
        out["class"] = type(target).__name__
        out["module"] = type(target).__module__
        out["is_qemu_target"] = isinstance(target, OEQemuTarget)
        out["rse_log"] = target.rse_log
        out["server_ip"] = target.server_ip
        out["serial_ports"] = target.runner.serial_ports
        out["slirp"] = target.use_slirp
        """,
        tmp_path,
    )
    assert out == {
        "class": "ParsecDemoQemuTarget",
        "module": "oeqa.controllers.parsec_demo_qemu",
        "is_qemu_target": True,
        "rse_log": None,  # until start: no model yet
        "server_ip": "10.0.2.2",
        "serial_ports": 1,
        "slirp": True,
    }


def test_it_attaches_the_rse_as_run_fvp_does(tmp_path: Path) -> None:
    out = in_poky(
        """
        out["params"] = controller.qemu_options("/run/x/rse.sock")
        """,
        tmp_path,
    )
    # The launcher's options, which run-fvp and the dev VM pass too (parsec_demo_rse).
    assert out["params"] == [
        "-chardev", "socket,id=rse,path=/run/x/rse.sock,reconnect=1",
        "-device", "virtio-serial-pci,id=vser0",
        "-device", "virtserialport,bus=vser0.0,chardev=rse,name=rse",
    ]  # fmt: skip


def test_stop_before_start_and_twice_does_nothing(tmp_path: Path) -> None:
    out = in_poky(
        """
        target = make()
        target.stop()
        target.stop()
        out["rse_log"] = target.rse_log
        """,
        tmp_path,
    )
    assert out == {"rse_log": None}


def test_the_model_runs_beside_the_boot_log_until_stop(tmp_path: Path) -> None:
    out = in_poky(
        """
        import socket
        target = make()
        target.start_rse_model()
        pid = target.rse_process.pid
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(target.rse_socket)
        probe.close()
        out["running"] = alive(pid)
        out["rse_log"] = target.rse_log
        out["rse_dir"] = target.rse_dir
        target.stop()
        out["after_stop"] = alive(pid)
        target.stop()
        out["socket_left"] = os.path.exists(target.rse_socket)
        """,
        tmp_path,
    )
    bootlog = tmp_path / "testimage" / "qemu_boot_log.20261203000000"
    assert out["running"] is True and out["after_stop"] is False
    assert out["rse_dir"] == f"{bootlog}.rse"
    assert out["rse_log"] == f"{bootlog}.rse/rse-console.log"
    assert Path(out["rse_log"]).exists(), "the model's console"
    assert out["socket_left"] is False, "the model removes its socket when it stops"


def test_a_failed_boot_leaves_no_model_running(tmp_path: Path) -> None:
    """runqemu fails (the qemuboot.conf names a kernel that is not there): start raises, after
    the RSE options reached runqemu, and nothing the controller started is left running."""
    image = make_image(tmp_path / "image")
    write_qemuboot(image)
    (image / "vmlinuz").unlink()
    provide_qmp(tmp_path)  # where qemurunner looks: beside the boot log's directory
    out = in_poky(
        f"""
        target = make(rootfs="{image}/parsec-demo-dev-image-amd64.rootfs.ext4",
                      dir_image="{image}")
        try:
            target.start(params="", runqemuparams="slirp")
            out["raised"] = None
        except RuntimeError as exc:
            out["raised"] = str(exc).splitlines()[0]
        pids = [int(r.split("(pid ")[1].split(")")[0]) for r in records if "(pid " in r]
        out["models"] = len(pids)
        out["alive"] = [alive(pid) for pid in pids]
        out["launch"] = [r for r in records if r.startswith("launchcmd=")]
        out["runqemu"] = [r for r in records if "KERNEL" in r]
        target.stop()
        """,
        tmp_path,
    )
    assert out["raised"] and out["raised"].startswith("FAILED to start qemu")
    assert out["models"] == 1 and out["alive"] == [False]
    [launch] = out["launch"]
    # The socket's path is the model's (here in a short temporary directory: the one beside
    # the boot log would be too long for a Unix socket), gone with the model.
    found = re.search(r"-chardev socket,id=rse,path=(\S+/rse\.sock),reconnect=1 ", launch)
    assert found is not None, launch
    assert not Path(found.group(1)).exists() and not Path(found.group(1)).parent.exists()
    assert "name=rse" in launch and " slirp " in launch
    assert out["runqemu"], "runqemu said why"


def test_a_missing_model_names_the_recipe_and_starts_nothing(tmp_path: Path) -> None:
    assert POKY is not None
    out = in_poky(
        """
        target = make()
        try:
            target.start(params="", runqemuparams="slirp")
        except controller.RseModelError as exc:
            out["error"] = str(exc)
        out["process"] = target.rse_process
        out["qemu_started"] = target.runner.runqemu is not None
        """,
        tmp_path,
        path=os.pathsep.join([str(Path(POKY) / "scripts"), os.defpath]),
    )
    assert "parsec-demo-rse-model-native" in out["error"]
    assert out["process"] is None and out["qemu_started"] is False
