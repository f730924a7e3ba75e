"""A validation run: the layer's oeqa cases against the dev VM, with reports.

Boots the dev image with the RSE model beside it (the runner of ``run-fvp``), runs the cases in
``meta-parsec-demo/lib/oeqa/runtime/cases`` through the oeqa stand-in (or through a real
openembedded-core's oeqa), and writes ``testresults.json``, ``junit.xml`` and ``report.html``
with the logs into the report directory (by default ``report/`` in the run directory, beside
the machine's logs). The command line is ``parsec-demo validate`` (``parsec_demo.cli.validate``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..logtail import tail
from ..machine.qemu import QemuMachine, load_config
from ..paths import new_run_dir
from ..tls_demo import read_events
from . import reports
from .runner import CaseResult, cases_dir, collect, run_tests

#: What the dev image holds, in the package names the cases ask OEHasPackage about.
DEV_IMAGE_PACKAGES = (
    "parsec-mbedtls-demo",
    "parsec-demo-service",
    "parsec-tool",
    "podman",
    "openssh",
    "iproute2",
    "procps",
)
HANDSHAKE_TEST = "parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host"


def test_data(machine: QemuMachine, arch: str) -> dict[str, Any]:
    return {
        "MACHINE": f"parsec-demo-dev-{arch}",
        "DISTRO": "debian-bookworm",
        "DISTRO_FEATURES": "systemd virtualization",
        "IMAGE_FEATURES": "ssh-server-openssh",
        "IMAGE_BASENAME": "parsec-demo-dev-image",
        "IMAGE_PKGS": DEV_IMAGE_PACKAGES,
        "MLPREFIX": "",
        "PARSEC_DEMO_RSE_LOG": str(machine.run_dir / "rse-console.log"),
    }


def run_validation(
    image: Path,
    report_dir: Path | None,
    modules: list[str] | None,
    oe_core: Path | None,
    arch: str,
) -> tuple[list[CaseResult], Path]:
    """Boot ``image``, run the cases, write the reports; the results and the run directory.

    The reports go to ``report_dir``, or without one to ``report/`` in the run directory."""
    cases = cases_dir()
    config = load_config(image)
    run_dir = new_run_dir("validate")
    report_dir = report_dir or run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    windows: dict[str, list[dict[str, Any]]] = {}
    events_path = run_dir / "rse-events.jsonl"

    @contextlib.contextmanager
    def window(name: str) -> Iterator[None]:
        _, offset = read_events(events_path) if events_path.exists() else ([], 0)
        try:
            yield
        finally:
            if events_path.exists():
                windows[name], _ = read_events(events_path, offset)

    started = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    with QemuMachine(config, run_dir) as machine, machine.target() as target:
        td = test_data(machine, arch)
        if oe_core is not None:
            results = run_with_oe_core(oe_core, target, td, modules, cases)
        else:
            from . import oeqa_shim

            oeqa_shim.install()
            results = run_tests(collect(cases, modules), target, td, around=window)
        journal = target.run("journalctl -u parsec-demo --no-pager -o short-iso", timeout=60)[1]
    logs = {
        "parsec-demo.service journal": journal,
        "RSE console (host)": tail(run_dir / "rse-console.log", lines=200),
        "machine console": tail(run_dir / "console.log", lines=200),
    }
    for name, text in logs.items():
        (report_dir / (name.split()[0].replace("/", "_") + ".log")).write_text(text)
    configuration = {
        "TEST_TYPE": "runtime",
        "MACHINE": td["MACHINE"],
        "DISTRO": td["DISTRO"],
        "IMAGE_BASENAME": td["IMAGE_BASENAME"],
        "STARTTIME": started,
        "LAYERS": "meta-parsec-demo",
        "IMAGE": image.name,
    }
    reports.write_testresults(report_dir / "testresults.json", results, configuration)
    reports.write_junit(report_dir / "junit.xml", results, "parsec_tls_demo")
    reports.write_html(
        report_dir / "report.html", results, configuration, windows.get(HANDSHAKE_TEST, []), logs
    )
    return results, run_dir


def check_oe_core(oe_core: Path) -> None:
    """A UserError unless ``oe_core`` is an openembedded-core (or poky) checkout with oeqa."""
    if not (oe_core / "meta/lib/oeqa/runtime/context.py").is_file():
        raise UserError(
            f"{oe_core} is not an openembedded-core or poky checkout "
            "(no meta/lib/oeqa/runtime/context.py)"
        )


def run_with_oe_core(
    oe_core: Path, target: Any, td: dict[str, Any], modules: list[str] | None, cases: Path
) -> list[CaseResult]:
    """The same cases through openembedded-core's own oeqa (OERuntimeTestContext)."""
    check_oe_core(oe_core)
    sys.path.insert(0, str(oe_core / "meta/lib"))
    from oeqa.runtime.context import OERuntimeTestContext  # type: ignore[import-not-found]

    logger = logging.getLogger("oeqa")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    with tempfile.TemporaryDirectory() as extract_dir:
        context = OERuntimeTestContext(td, logger, target, set(td["IMAGE_PKGS"]), extract_dir)
        context.loadTests([str(cases)], modules=modules or ["parsec_tls_demo"])
        result = context.runTests()
    outcomes: list[CaseResult] = []
    for status, items in (
        ("FAILED", result.failures),
        ("ERROR", result.errors),
        ("SKIPPED", result.skipped),
    ):
        for test, log in items:
            outcomes.append(CaseResult(test.id().split("cases.")[-1], status, 0.0, str(log)))
    done = {r.name for r in outcomes}
    for success in getattr(result, "successes", []):
        test = success[0] if isinstance(success, tuple) else success  # (test, details)
        name = test.id().split("cases.")[-1]
        if name not in done:
            outcomes.append(CaseResult(name, "PASSED", 0.0))
    return outcomes
