"""The oeqa stand-in and runner: ordering by dependencies, skips, timeouts, results, reports."""

from __future__ import annotations

import json
import logging
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from parsec_demo.validate import oeqa_shim, reports
from parsec_demo.validate.runner import cases_dir, collect, load_module, run_tests

CASES = """
import time
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.core.decorator.depends import OETestDepends
from oeqa.core.decorator.oetimeout import OETimeout
from oeqa.runtime.decorator.package import OEHasPackage

class First(OERuntimeTestCase):
    @OETestDepends(["sample.First.test_b_base"])
    def test_a_needs_base(self):
        self.assertEqual(self.target.run("echo hi"), (0, "hi"))

    def test_b_base(self):
        self.assertEqual(self.td["MACHINE"], "qemu-test")

class Second(OERuntimeTestCase):
    def test_fails(self):
        self.assertEqual(1, 2, "deliberately")

    @OETestDepends(["sample.Second.test_fails"])
    def test_skipped_by_dependency(self):
        pass

    @OEHasPackage(["not-installed"])
    def test_skipped_by_package(self):
        pass

    @OETimeout(1)
    def test_times_out(self):
        time.sleep(5)
"""


class FakeTarget:
    def run(self, command: str, timeout: float | None = None) -> tuple[int, str]:
        return 0, command.removeprefix("echo ")


def test_dependencies_skips_timeouts_and_results(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    oeqa_shim.install()
    (tmp_path / "sample.py").write_text(textwrap.dedent(CASES))
    tests = collect(tmp_path)
    with caplog.at_level(logging.INFO, logger="parsec_demo.validate.runner"):
        results = {
            r.name: r
            for r in run_tests(tests, FakeTarget(), {"MACHINE": "qemu-test", "IMAGE_PKGS": ()})
        }
    # One progress line per test, as it ends, through the runner's logger.
    progress = [r.getMessage() for r in caplog.records if r.name == "parsec_demo.validate.runner"]
    assert len(progress) == len(results) == 6
    assert progress[0].startswith("PASSED sample.First.test_b_base (")
    assert (
        "SKIPPED sample.Second.test_skipped_by_dependency: "
        "dependency sample.Second.test_fails did not pass"
    ) in progress
    assert any(line.startswith("ERROR sample.Second.test_times_out (") for line in progress)
    assert list(results)[:2] == ["sample.First.test_b_base", "sample.First.test_a_needs_base"]
    assert results["sample.First.test_a_needs_base"].status == "PASSED"
    assert results["sample.Second.test_fails"].status == "FAILED"
    assert "deliberately" in results["sample.Second.test_fails"].log
    assert results["sample.Second.test_skipped_by_dependency"].status == "SKIPPED"
    assert (
        "sample.Second.test_fails did not pass"
        in results["sample.Second.test_skipped_by_dependency"].log
    )
    assert results["sample.Second.test_skipped_by_package"].status == "SKIPPED"
    timed_out = results["sample.Second.test_times_out"]
    assert (
        timed_out.status == "ERROR"
        and "OETimeout of 1 s" in timed_out.log
        and timed_out.duration < 3
    )

    configuration = {"IMAGE_BASENAME": "img", "MACHINE": "qemu-test", "STARTTIME": "20261127000000"}
    result_id = reports.write_testresults(
        tmp_path / "testresults.json", list(results.values()), configuration
    )
    document = json.loads((tmp_path / "testresults.json").read_text())
    assert result_id == "runtime_img_qemu-test_20261127000000"
    assert document[result_id]["configuration"]["MACHINE"] == "qemu-test"
    assert document[result_id]["result"]["sample.Second.test_fails"]["status"] == "FAILED"
    reports.write_junit(tmp_path / "junit.xml", list(results.values()), "sample")
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == ("6", "1", "1", "2")
    # A failure's message is the last line of its traceback: the exception and its text.
    failure = suite.find("testcase[@name='test_fails']/failure")
    assert failure is not None
    assert failure.get("message") == "AssertionError: 1 != 2 : deliberately"
    skipped = suite.find("testcase[@name='test_skipped_by_dependency']/skipped")
    assert skipped is not None
    assert skipped.get("message") == "dependency sample.Second.test_fails did not pass"


RSE_CONSOLE = "\n".join(
    [
        "[RSE-COMMS] Received message: protocol_ver=0 seq_num=1 client_id=0x0001 "
        "handle=0x40000100 type=0 in_len=3 out_len=1",
        "[Crypto] psa_import_key: type=RSA_PUBLIC_KEY bits=2048 lifetime=persistent "
        "-> key 0x00000007",
        "[RSE-COMMS] Sending reply: seq_num=1 return_val=0",
        "[Crypto] psa_verify_hash: key 0x00000007 alg=RSA_PKCS1V15_SIGN(SHA_256) -> PSA_SUCCESS",
        "[Crypto] psa_destroy_key: key 0x00000007 -> PSA_SUCCESS",
        "[Crypto] psa_verify_hash: key 0x00000008 alg=ECDSA_ANY -> PSA_ERROR_INVALID_SIGNATURE "
        "(signature does not verify)",
    ]
)


def test_the_cases_read_rse_evidence_from_a_console() -> None:
    oeqa_shim.install()
    module = load_module(cases_dir() / "parsec_tls_demo.py")
    calls = module.rse_calls(RSE_CONSOLE)
    assert calls == [
        ("psa_import_key", "0x00000007", None, "PSA_SUCCESS"),
        ("psa_verify_hash", "0x00000007", "RSA_PKCS1V15_SIGN(SHA_256)", "PSA_SUCCESS"),
        ("psa_destroy_key", "0x00000007", None, "PSA_SUCCESS"),
        ("psa_verify_hash", "0x00000008", "ECDSA_ANY", "PSA_ERROR_INVALID_SIGNATURE"),
    ]


def test_the_sequence_diagram_shows_each_psa_call() -> None:
    events = [
        {
            "function": "psa_import_key",
            "key_id": 1,
            "key_type": "RSA_PUBLIC_KEY",
            "status": "PSA_SUCCESS",
        },
        {
            "function": "psa_verify_hash",
            "key_id": 1,
            "alg": "RSA_PKCS1V15_SIGN(SHA_256)",
            "status": "PSA_SUCCESS",
        },
    ]
    svg = reports.sequence_svg(events)
    assert svg.count('class="step psa"') == 2
    assert "PsaImportKey RSA_PUBLIC_KEY" in svg and "psa_verify_hash key 0x00000001" in svg
    for lane in reports.LANES:
        assert lane in svg


def test_an_rse_with_only_comms_traces_still_gives_evidence() -> None:
    import unittest

    oeqa_shim.install()
    module = load_module(cases_dir() / "parsec_tls_demo.py")
    trace = (
        "[RSE-COMMS] Received message: protocol_ver=0 seq_num=1 client_id=0x0000 handle=0x40000100"
    )
    case = unittest.TestCase()
    module.check_evidence(case, module.rse_calls(trace), 2, "\n".join([trace] * 6))
    try:
        module.check_evidence(case, [], 2, "\n".join([trace] * 2))
    except AssertionError as exc:
        assert "too few RSE crypto calls" in str(exc)
    else:
        raise AssertionError("two calls cannot serve two signatures")
