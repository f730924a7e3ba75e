"""The validation suite end to end: the layer's oeqa cases against the dev VM, and its reports,
the HTML page checked in headless Chromium as a person would see it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from parsec_demo.image_build import build_image
from parsec_demo.validate.command import run_validation

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the dev image needs root"),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[object]]:
    report_dir = tmp_path_factory.mktemp("report")
    results, _ = run_validation(build_image("amd64"), report_dir, None, None, "amd64")
    return report_dir, results


def test_every_case_passes_against_the_dev_vm(report: tuple[Path, list[object]]) -> None:
    report_dir, _ = report
    document = json.loads((report_dir / "testresults.json").read_text())
    [(result_id, entry)] = document.items()
    assert result_id.startswith("runtime_parsec-demo-dev-image_parsec-demo-dev-amd64_")
    statuses = {name: r["status"] for name, r in entry["result"].items()}
    failures = {
        n: entry["result"][n].get("log", "")[-800:] for n, s in statuses.items() if s != "PASSED"
    }
    assert failures == {}
    assert {
        "parsec_tls_demo.ParsecServiceTest.test_list_providers",
        "parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host",
        "parsec_tls_demo.TlsHandshakeTest.test_handshake_in_a_container",
        "parsec_tls_demo.NegativeTest.test_a_corrupted_certificate_is_refused",
        "parsec_tls_demo.NegativeTest.test_handshakes_survive_a_parsec_restart",
    } <= set(statuses)
    suite = ET.parse(report_dir / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and suite.get("errors") == "0"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_the_html_report_renders_in_chromium(
    report: tuple[Path, list[object]], tmp_path: Path
) -> None:
    report_dir, _ = report
    page = (report_dir / "report.html").as_uri()
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    dom = subprocess.run(
        ["chromium", *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120
    ).stdout
    assert '<table id="results">' in dom
    assert dom.count('class="passed"') >= 7
    assert dom.count('class="step psa"') == 6, "import, verify, destroy for each of 2 signatures"
    assert "psa_verify_hash key 0x" in dom and "ssl_client1" in dom and "RSE" in dom
    screenshot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={screenshot}", "--window-size=1200,2400", page],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert screenshot.stat().st_size > 20_000
