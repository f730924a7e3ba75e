"""``parsec-demo validate``: the layer's oeqa cases against the dev VM, with reports.

Boots the dev image with the RSE model beside it (the runner of ``./tools/run-fvp``), runs the
cases in ``meta-parsec-demo/lib/oeqa/runtime/cases`` through the oeqa stand-in (or through a
real openembedded-core's oeqa with ``--oe-core PATH``), and writes ``testresults.json``,
``junit.xml`` and ``report.html`` with the logs into the report directory.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..image_build import build_image
from ..machine.lifecycle import BootError
from ..machine.qemu import QemuMachine, load_config
from ..paths import new_run_dir
from ..tls_demo import read_events
from . import reports
from .runner import CASES_DIR, CaseResult, collect, run_tests

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
    image: Path, report_dir: Path, modules: list[str] | None, oe_core: Path | None, arch: str
) -> tuple[list[CaseResult], Path]:
    run_dir = new_run_dir("validate")
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
    with QemuMachine(load_config(image), run_dir) as machine, machine.target() as target:
        td = test_data(machine, arch)
        if oe_core is not None:
            results = run_with_oe_core(oe_core, target, td, modules)
        else:
            from . import oeqa_shim

            oeqa_shim.install()
            results = run_tests(collect(CASES_DIR, modules), target, td, around=window)
        journal = target.run("journalctl -u parsec-demo --no-pager -o short-iso", timeout=60)[1]
    logs = {
        "parsec-demo.service journal": journal,
        "RSE console (host)": _tail(run_dir / "rse-console.log"),
        "machine console": _tail(run_dir / "console.log"),
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


def _tail(path: Path, lines: int = 200) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_with_oe_core(
    oe_core: Path, target: Any, td: dict[str, Any], modules: list[str] | None
) -> list[CaseResult]:
    """The same cases through openembedded-core's own oeqa (OERuntimeTestContext)."""
    sys.path.insert(0, str(oe_core / "meta/lib"))
    from oeqa.runtime.context import OERuntimeTestContext  # type: ignore[import-not-found]

    logger = logging.getLogger("oeqa")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    with tempfile.TemporaryDirectory() as extract_dir:
        context = OERuntimeTestContext(td, logger, target, set(td["IMAGE_PKGS"]), extract_dir)
        context.loadTests([str(CASES_DIR)], modules=modules or ["parsec_tls_demo"])
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="parsec-demo validate", description=__doc__)
    parser.add_argument("--image", type=Path, help="dev image directory (default: build it)")
    parser.add_argument("--arch", default="amd64")
    parser.add_argument("--report-dir", type=Path, help="default: <run directory>/report")
    parser.add_argument("--oe-core", type=Path, help="an openembedded-core (or poky) checkout")
    parser.add_argument("--module", action="append", help="case module(s) to run")
    args = parser.parse_args(argv)
    image = args.image or build_image(args.arch)
    report_dir = args.report_dir or Path(tempfile.mkdtemp(prefix="parsec-demo-report-"))
    try:
        results, run_dir = run_validation(image, report_dir, args.module, args.oe_core, args.arch)
    except BootError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    bad = [r for r in results if r.status in ("FAILED", "ERROR")]
    print(
        f"{len(results) - len(bad)} passed or skipped, {len(bad)} failed; reports in {report_dir}"
    )
    print(f"machine logs in {run_dir}")
    return 1 if bad else 0
