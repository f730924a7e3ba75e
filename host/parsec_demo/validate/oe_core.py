"""The validation run through a real openembedded-core: testimage's way, without a Yocto build.

``parsec-demo validate --oe-core POKY`` boots the dev image the way ``testimage`` boots a QEMU
machine and runs the cases through POKY's own oeqa:

- the image's ``qemuboot.conf`` (``image_build.write_qemuboot``) is what POKY's ``runqemu``
  boots, through oeqa's ``QemuRunner`` (serial console on a TCP socket, QMP, slirp with the
  SSH forward runqemu picks);
- the target is the layer's ``ParsecDemoQemuTarget``, found by name among the
  ``oeqa/controllers`` on ``sys.path`` and constructed with the keyword arguments
  ``testimage_main`` gives it (scarthgap's ``testimage.bbclass``), started with
  TEST_QEMUPARAMS and TEST_RUNQEMUPARAMS: it starts the RSE model (``parsec-demo-rse-model``
  on PATH: this toolkit's) beside QEMU;
- commands go through poky's ``OESSHTarget`` (the ``ssh`` and ``scp`` programs). The image
  lets root in with this build's key only: it is offered by an ``ssh-agent`` of the run, as
  testimage passes its caller's agent on (SSH_AUTH_SOCK);
- POKY's ``ping`` and ``ssh`` cases run first, then the layer's, in ``OERuntimeTestContext``.

What a Yocto build provides, the run provides alike: ``runqemu`` on PATH (POKY/scripts), QEMU's
``qmp`` package where qemurunner looks for it (``<run>/recipe-sysroot-native/usr/lib/
qemu-python``: a link to the ``qemu.qmp`` distribution installed with the toolkit's dev
dependencies), a TMPDIR, the boot log at ``<run>/testimage/qemu_boot_log.<time>``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parsec_demo_processes import (
    failure_message,
    socket_accepts,
    spawn,
    stop_group,
    tail,
    wait_until,
)
from parsec_demo_rse import RseFiles

from ..errors import UserError
from ..image_build import ImageManifest, qemuboot_rootfs, write_qemuboot
from ..machine.lifecycle import BootError
from ..paths import layer_lib
from .runner import CaseResult, case_modules

#: poky's runtime cases that run before the layer's (kas/testimage.yml's TEST_SUITES).
POKY_CASES = ("ping", "ssh")
#: testimage's controller for QEMU machines (kas/testimage.yml's TEST_TARGET).
TEST_TARGET = "ParsecDemoQemuTarget"
#: Under slirp: the machine is reached through the forwarded port on this host; the host is
#: 10.0.2.2 for the machine (testimage's defaults when TEST_RUNQEMUPARAMS has "slirp").
TEST_TARGET_IP = "127.0.0.1"
TEST_SERVER_IP = "10.0.2.2"
TEST_RUNQEMUPARAMS = "slirp"
TEST_QEMUPARAMS = ""
#: Seconds for the login prompt (TEST_QEMUBOOT_TIMEOUT).
BOOT_TIMEOUT = 300

logger = logging.getLogger(__name__)


class OeCoreError(UserError):
    pass


def check_oe_core(oe_core: Path) -> None:
    """A UserError unless ``oe_core`` is a poky checkout (oeqa, runqemu and bitbake's lib)."""
    missing = [
        part
        for part in ("meta/lib/oeqa/runtime/context.py", "scripts/runqemu", "bitbake/lib/bb")
        if not (oe_core / part).exists()
    ]
    if missing:
        raise OeCoreError(
            f"{oe_core} is not a poky checkout (no {', '.join(missing)}): --oe-core needs "
            "openembedded-core's oeqa and runqemu, and bitbake"
        )


def import_oeqa(oe_core: Path) -> None:
    """POKY's oeqa and bitbake's modules, and the layer's, importable (testimage's sys.path)."""
    for path in (oe_core / "meta/lib", oe_core / "bitbake/lib", layer_lib()):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def oeqa_logger(log_file: Path) -> logging.Logger:
    """The logger oeqa and the controller write to: the toolkit's, tagged ``[oeqa]``, also
    kept in ``log_file``; with bitbake's ``debug2`` level, which qemurunner uses."""
    log = logging.getLogger("parsec_demo.oeqa")

    def debug2(msg: object, *args: object, **kwargs: Any) -> None:
        log.log(logging.DEBUG - 1, msg, *args, **kwargs)

    def tag(record: logging.LogRecord) -> bool:
        record.tag = "oeqa"
        return True

    setattr(log, "debug2", debug2)  # noqa: B010 - bitbake's loggers have it
    for old in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
        log.removeHandler(old)
        old.close()
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s"))
    log.addHandler(handler)
    if tag not in log.filters:
        log.filters.clear()
        log.addFilter(tag)
    return log


def provide_qmp(run_dir: Path) -> Path:
    """QEMU's ``qmp`` package where qemurunner imports it from: ``<dirname(dirname(bootlog))>/
    recipe-sysroot-native/usr/lib/qemu-python`` (a Yocto build stages QEMU's own there)."""
    spec = importlib.util.find_spec("qemu.qmp")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise OeCoreError(
            "QEMU's Python QMP package (qemu.qmp) is not installed: --oe-core needs the "
            "toolkit's dev dependencies (tools/constraints.txt; ./tools/test installs them)"
        )
    directory = run_dir / "recipe-sysroot-native/usr/lib/qemu-python"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "qmp").symlink_to(locations[0], target_is_directory=True)
    return directory


@contextlib.contextmanager
def environment(changes: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``changes`` for the block (runqemu and ssh are started from it)."""
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def ssh_agent(key: Path, run_dir: Path) -> Iterator[str]:
    """An ``ssh-agent`` holding ``key`` for the block; its socket's path."""
    sock = run_dir / "ssh-agent.sock"
    agent = spawn(["ssh-agent", "-D", "-a", str(sock)], run_dir / "ssh-agent.log")
    try:
        wait_until(lambda: socket_accepts(sock) or agent.poll() is not None, 10, 0.05)
        if not socket_accepts(sock):
            raise OeCoreError(f"ssh-agent did not start: {tail(run_dir / 'ssh-agent.log', 5)}")
        added = subprocess.run(
            ["ssh-add", "-q", str(key)],
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            capture_output=True,
            text=True,
        )
        if added.returncode != 0:
            raise OeCoreError(f"ssh-add {key} failed: {added.stderr.strip()}")
        yield str(sock)
    finally:
        stop_group(agent, grace=5)


def target_kwargs(
    arch: str, image: Path, run_dir: Path, bootlog: Path, machine: str
) -> dict[str, Any]:
    """What ``testimage_main`` passes a controller (scarthgap), for the dev image."""
    return {
        "machine": machine,
        "rootfs": str(qemuboot_rootfs(image)),
        "tmpdir": str(run_dir / "tmp"),
        "dir_image": str(image),
        "display": None,
        "kernel": str(image / ImageManifest.load(image).kernel),
        "boottime": BOOT_TIMEOUT,
        "bootlog": str(bootlog),
        "kvm": False,
        "slirp": "slirp" in TEST_RUNQEMUPARAMS.split(),
        "dump_dir": str(run_dir / "runtime-hostdump"),
        # len(SERIAL_CONSOLES): the dev image has one, with the login on it.
        "serial_ports": 1,
        "ovmf": False,
        "tmpfsdir": None,
        "powercontrol_cmd": None,
        "powercontrol_extra_args": "",
        "serialcontrol_cmd": None,
        "serialcontrol_extra_args": "",
        "testimage_dump_monitor": "",
    }


@dataclass
class OeCoreRun:
    """What the run leaves for the reports."""

    results: list[CaseResult]
    journal: str
    rse_log: Path | None
    bootlog: Path
    #: What the cases kept in oeqa's extraresults (the RSE calls they saw).
    extraresults: dict[str, Any]


def tool_path(oe_core: Path) -> str:
    """PATH for runqemu (POKY/scripts) and the RSE model (this toolkit's scripts directory),
    as a Yocto build has them in its native sysroot."""
    scripts = sysconfig.get_path("scripts")
    parts = [str(oe_core / "scripts"), scripts, os.environ.get("PATH", os.defpath)]
    return os.pathsep.join(parts)


def run_oe_core(
    oe_core: Path,
    image: Path,
    run_dir: Path,
    td: dict[str, Any],
    modules: list[str] | None,
    cases: Path,
) -> OeCoreRun:
    """Boot ``image`` with runqemu and the layer's QEMU controller, run the cases through
    POKY's OERuntimeTestContext, stop everything; the results."""
    check_oe_core(oe_core)
    oe_core, image, run_dir = oe_core.resolve(), image.resolve(), run_dir.resolve()
    manifest = ImageManifest.load(image)
    conf = write_qemuboot(image)
    import_oeqa(oe_core)
    from oeqa.controllers.parsec_demo_qemu import (
        RseModelError,
    )
    from oeqa.runtime.context import (
        OERuntimeTestContext,
        OERuntimeTestContextExecutor,
    )

    log = oeqa_logger(run_dir / "oeqa.log")
    provide_qmp(run_dir)
    (run_dir / "tmp").mkdir(exist_ok=True)
    bootlog = run_dir / "testimage" / f"qemu_boot_log.{time.strftime('%Y%m%d%H%M%S')}"
    bootlog.parent.mkdir(parents=True, exist_ok=True)
    kwargs = target_kwargs(manifest.arch, image, run_dir, bootlog, td["MACHINE"])
    with (
        ssh_agent(Path(manifest.ssh_key), run_dir) as agent,
        # TERM: runqemu's `tput smam` on the way out prints nothing into the log for "dumb".
        environment({"PATH": tool_path(oe_core), "SSH_AUTH_SOCK": agent, "TERM": "dumb"}),
        tempfile.TemporaryDirectory() as extract_dir,
    ):
        target = OERuntimeTestContextExecutor.getTarget(
            TEST_TARGET, log, TEST_TARGET_IP, TEST_SERVER_IP, **kwargs
        )
        context = OERuntimeTestContext(td, log, target, set(td["IMAGE_PKGS"]), extract_dir)
        paths = [str(oe_core / "meta/lib/oeqa/runtime/cases"), str(cases)]
        context.loadTests(paths, modules=[*POKY_CASES, *(modules or case_modules(cases))])
        logger.info(f"booting {conf.name} with {oe_core}/scripts/runqemu and {TEST_TARGET}")
        started = time.monotonic()
        try:
            try:
                target.start(params=TEST_QEMUPARAMS, runqemuparams=TEST_RUNQEMUPARAMS)
            except RseModelError as exc:
                raise OeCoreError(str(exc)) from None
            except RuntimeError as exc:
                raise boot_failure(exc, bootlog, run_dir, target) from None
            logger.info(
                f"machine up in {time.monotonic() - started:.0f} s; SSH on {target.runner.ip}"
            )
            result = context.runTests()
            journal = target.run("journalctl -u parsec-demo --no-pager -o short-iso", 60)[1]
        finally:
            target.stop()
    rse_log = getattr(target, "rse_log", None)
    return OeCoreRun(
        case_results(context, result),
        journal,
        Path(rse_log) if rse_log else None,
        bootlog,
        dict(getattr(context, "extraresults", {})),
    )


def boot_failure(exc: Exception, bootlog: Path, run_dir: Path, target: Any) -> BootError:
    """A failed boot in one line, then the console's last lines and the logs to read."""
    console = Path(f"{bootlog}.2")  # qemurunner logs the login console there while booting
    logs = [p for p in (bootlog, console, run_dir / "oeqa.log", *_rse_logs(target)) if p.exists()]
    headline = f"boot failed: {str(exc).splitlines()[0].strip()}"
    return BootError(failure_message(headline, tail(console) or tail(bootlog), logs))


def _rse_logs(target: Any) -> list[Path]:
    directory = getattr(target, "rse_dir", None)
    if not directory:
        return []
    files = RseFiles(directory)
    return [Path(files.console_log), Path(files.process_log)]


def case_results(context: Any, result: Any) -> list[CaseResult]:
    """Each loaded test's outcome, in the order it was registered (oeqa's own reading of its
    result object, as ``logDetails`` makes testresults.json of it)."""
    outcomes = []
    for case in context._registry["cases"].values():
        status, log = result._getTestResultDetails(case)
        if status == "UNKNOWN":  # registered, never run (the run was interrupted)
            status, log = "ERROR", log or "the test did not run"
        started = result.starttime.get(case.id(), 0.0)
        ended = result.endtime.get(case.id(), started)
        outcomes.append(
            CaseResult(
                case.id(),
                status,
                round(ended - started, 2),
                str(log or ""),
                started,
                ended,
            )
        )
    return outcomes
