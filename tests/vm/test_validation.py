"""The validation suite end to end: the layer's oeqa cases against the dev VM, and its reports,
the HTML page checked in headless Chromium as a person would see it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from parsec_demo import cli
from parsec_demo.machine.qemu import QemuMachine
from parsec_demo.validate.command import run_validation
from parsec_demo.validate.reports import RSE_CALLS_RESULT, summary_line
from parsec_demo.validate.runner import CaseResult

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the dev image needs root"),
]


@pytest.fixture(scope="module")
def report(
    dev_image: Path, dev_machine: QemuMachine, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[object]]:
    runs = tmp_path_factory.mktemp("runs")
    previous = os.environ.get("PARSEC_DEMO_RUNS")
    os.environ["PARSEC_DEMO_RUNS"] = str(runs)
    try:
        # No report directory given: the reports go to the run directory. On the session's
        # dev VM (booting is QemuMachine's, which every VM test uses).
        results, run_dir = run_validation(dev_image, None, None, None, "amd64", machine=dev_machine)
    finally:
        if previous is None:
            del os.environ["PARSEC_DEMO_RUNS"]
        else:
            os.environ["PARSEC_DEMO_RUNS"] = previous
    assert run_dir.parent == runs
    report_dir = run_dir / "report"
    assert {p.name for p in report_dir.iterdir()} >= {
        "testresults.json", "junit.xml", "report.html",
    }  # fmt: skip
    # The logs the page shows: the RSE's console with the handshakes it served, the machine's.
    assert "[Crypto] psa_verify_hash: key 0x" in (report_dir / "RSE.log").read_text()
    assert "parsec-demo login" in (report_dir / "machine.log").read_text()
    return report_dir, results


def test_every_case_passes_against_the_dev_vm(report: tuple[Path, list[object]]) -> None:
    report_dir, outcomes = report
    document = json.loads((report_dir / "testresults.json").read_text())
    [(result_id, entry)] = document.items()
    assert result_id.startswith("runtime_parsec-demo-dev-image_parsec-demo-dev-amd64_")
    # The RSE calls the evidence cases saw are recorded beside the cases, for report html.
    recorded = {n for n in entry["result"] if n.startswith(RSE_CALLS_RESULT)}
    assert recorded == {RSE_CALLS_RESULT + "handshake", RSE_CALLS_RESULT + "mutual_tls"}
    statuses = {n: r["status"] for n, r in entry["result"].items() if n not in recorded}
    failures = {
        n: entry["result"][n].get("log", "")[-800:] for n, s in statuses.items() if s != "PASSED"
    }
    assert failures == {}
    assert {
        "parsec_demo_service.ParsecServiceTest.test_list_providers",
        "parsec_demo_handshake.TlsHandshakeTest.test_handshake_on_the_host",
        # The RSE evidence: it would be SKIPPED (so failing here) without the RSE model's log.
        "parsec_demo_handshake.TlsHandshakeTest.test_rse_served_the_handshake",
        "parsec_demo_handshake.TlsHandshakeTest.test_handshake_in_a_container",
        "parsec_demo_handshake.TlsHandshakeTest.test_a_corrupted_certificate_is_refused",
        "parsec_demo_handshake.TlsHandshakeTest.test_tls13_handshake",
        "parsec_demo_restart.ParsecRestartTest.test_handshakes_survive_a_parsec_restart",
        "parsec_demo_mutual_tls.MutualTlsTest.test_mutual_tls_with_a_key_made_in_the_rse",
        "parsec_demo_mutual_tls.MutualTlsTest.test_a_certificate_for_another_key_is_refused",
        "parsec_demo_mutual_tls.MutualTlsTest.test_a_destroyed_key_is_refused",
    } <= set(statuses)
    suite = ET.parse(report_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert suite.get("skipped") == "0"
    results = [r for r in outcomes if isinstance(r, CaseResult)]
    assert summary_line(results) == f"{len(statuses)} passed, 0 skipped, 0 failed"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_the_html_report_renders_in_chromium(
    report: tuple[Path, list[object]], tmp_path: Path
) -> None:
    report_dir, outcomes = report
    results = [r for r in outcomes if isinstance(r, CaseResult)]
    page = (report_dir / "report.html").as_uri()
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    ).stdout
    # The page as Chromium built it, read as tests/unit/test_reports.py reads the recorded one.
    reading = _report_reading()
    reading.check_results_table(dom, [(r.name, r.status) for r in results])
    assert len(results) >= 8 and all(r.status == "PASSED" for r in results)
    # Import, verify and destroy for each of the handshake's two signatures.
    calls = [("psa_import_key", None, "PSA_SUCCESS"), ("psa_verify_hash", None, "PSA_SUCCESS"),
             ("psa_destroy_key", None, "PSA_SUCCESS")] * 2  # fmt: skip
    reading.check_diagram(dom, calls)
    # The mutual-TLS case: the key made in the RSE signs the CSR, then the CertificateVerify.
    mutual = reading.arrows(reading.parse(dom), diagram=1)
    generated = next(a.label for a in mutual if a.kind == "psa")
    assert generated.startswith("psa_generate_key key 0x")
    signatures = [a for a in mutual if a.kind == "parsec" and "PsaSignHash" in a.label]
    assert [a.label.split(":")[0] for a in signatures] == ["CSR", "CertificateVerify"]
    signed_by = [a.label for a in mutual if a.kind == "psa" and a.label.startswith("psa_sign")]
    assert {s.split()[-1] for s in signed_by} == {generated.split()[-1]}
    # The route testimage and CI take: `report html` of the run's testresults.json, whose
    # evidence cases recorded the RSE calls they saw; Chromium draws the same handshake.
    from_json = tmp_path / "from-testresults.html"
    assert (
        cli.main(["report", "html", str(report_dir / "testresults.json"), "-o", str(from_json)])
        == 0
    )
    redrawn = subprocess.run(
        ["chromium", *flags, "--dump-dom", from_json.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    reading.check_diagram(redrawn, calls)
    assert "psa_generate_key key 0x" in redrawn, "the mutual-TLS diagram too"
    screenshot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={screenshot}", "--window-size=1200,2400", page],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert screenshot.stat().st_size > 20_000


def _report_reading() -> ModuleType:
    """tests/unit/test_reports.py, whose functions read a report page."""
    path = Path(__file__).parents[1] / "unit/test_reports.py"
    spec = importlib.util.spec_from_file_location("report_reading", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module
