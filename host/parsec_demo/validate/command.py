"""A validation run: the layer's oeqa cases against the dev VM, with reports.

Boots the dev image with the RSE model beside it and runs the cases in
``meta-parsec-demo/lib/oeqa/runtime/cases``, either through the oeqa stand-in against the
machine run-fvp's runner boots, or (``oe_core``) through a real poky's oeqa, runqemu and the
layer's testimage controller (``oe_core.run_oe_core``). Either way it writes
``testresults.json``, ``junit.xml`` and ``report.html`` with the logs into the report directory
(by default ``report/`` in the run directory, beside the machine's logs). The command line is
``parsec-demo validate`` (``parsec_demo.cli.validate``).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from parsec_demo_processes import tail
from parsec_demo_rse import RseFiles

from ..image_build import IMAGE_BASENAME, machine_name
from ..machine.qemu import QemuMachine, load_config
from ..paths import layer_lib, new_run_dir
from . import reports
from .oe_core import TEST_TARGET, run_oe_core
from .runner import CaseResult, cases_dir, collect, run_tests

#: What the dev image holds, in the package names the cases ask OEHasPackage about.
DEV_IMAGE_PACKAGES = (
    "parsec-mbedtls-demo",
    "parsec-demo-service",
    "parsec-tool",
    "podman",
    "openssh",
    "openssh-sshd",
    "iproute2",
    "procps",
)


def test_data(arch: str) -> dict[str, Any]:
    """The test data of the dev image (testimage's comes from the image's testdata.json)."""
    return {
        "MACHINE": machine_name(arch),
        "DISTRO": "debian-bookworm",
        "DISTRO_FEATURES": "systemd virtualization",
        "IMAGE_FEATURES": "ssh-server-openssh",
        "IMAGE_BASENAME": IMAGE_BASENAME,
        "IMAGE_PKGS": DEV_IMAGE_PACKAGES,
        "MLPREFIX": "",
    }


def run_validation(
    image: Path,
    report_dir: Path | None,
    modules: list[str] | None,
    oe_core: Path | None,
    arch: str,
    machine: QemuMachine | None = None,
) -> tuple[list[CaseResult], Path]:
    """Boot ``image``, run the cases, write the reports; the results and the run directory.

    The reports go to ``report_dir``, or without one to ``report/`` in the run directory.
    ``machine``: a machine of ``image`` already running, to run the cases on instead of booting
    one (not with ``oe_core``, whose controller boots its own)."""
    cases = cases_dir()
    run_dir = new_run_dir("validate")
    report_dir = report_dir or run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    td = test_data(arch)
    started = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    configuration = {
        "TEST_TYPE": "runtime",
        "MACHINE": td["MACHINE"],
        "DISTRO": td["DISTRO"],
        "IMAGE_BASENAME": td["IMAGE_BASENAME"],
        "STARTTIME": started,
        "LAYERS": "meta-parsec-demo",
        "IMAGE": image.name,
    }
    if oe_core is not None:
        run = run_oe_core(oe_core, image, run_dir, td, modules, cases)
        results, journal, recorded = run.results, run.journal, run.extraresults
        rse_console = run.rse_log or Path(RseFiles(run_dir).console_log)
        console = Path(f"{run.bootlog}.2")  # qemurunner's log of the login console
        configuration.update(TEST_TARGET=TEST_TARGET, OE_CORE=str(oe_core))
    else:
        with ExitStack() as stack:
            if machine is None:
                machine = stack.enter_context(QemuMachine(load_config(image), run_dir))
            results, journal, recorded = run_with_shim(machine, td, modules, cases)
        rse_console, console = machine.rse_console_log, machine.console_log
    # The RSE's calls the evidence cases saw, for the report's sequence diagrams.
    calls = reports.rse_calls_in(recorded)

    logs = {
        "parsec-demo.service journal": journal,
        "RSE console (host)": tail(rse_console, lines=200),
        "machine console": tail(console, lines=200),
    }
    for name, text in logs.items():
        (report_dir / (name.split()[0].replace("/", "_") + ".log")).write_text(text)
    handshake, mutual = calls.get("handshake", []), calls.get("mutual_tls", [])
    reports.write_testresults(report_dir / "testresults.json", results, configuration, calls)
    reports.write_junit(report_dir / "junit.xml", results, "parsec_tls_demo")
    reports.write_html(report_dir / "report.html", results, configuration, handshake, logs, mutual)
    return results, run_dir


def run_with_shim(
    machine: QemuMachine, td: dict[str, Any], modules: list[str] | None, cases: Path
) -> tuple[list[CaseResult], str, dict[str, Any]]:
    """The cases through the oeqa stand-in, against ``machine`` (booted by run-fvp's runner);
    the results, the Parsec service's journal and the cases' extra results."""
    from . import oeqa_shim

    oeqa_shim.install(layer_lib())
    context = SimpleNamespace(extraresults={})
    with machine.target() as target:
        results = run_tests(collect(cases, modules), target, td, context=context)
        journal = target.run("journalctl -u parsec-demo --no-pager -o short-iso", timeout=60)[1]
    return results, journal, context.extraresults
