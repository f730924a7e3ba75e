"""``parsec-demo report``: JUnit and HTML from an oeqa testresults.json, as testimage writes it.

The input below has testimage's shape (meta/lib/oeqa/core/runner.py at the pinned poky:
``logDetails`` and ``OETestResultJSONHelper``): a result id per run, its configuration as
``get_testimage_configuration`` builds it (LAYERS is an object), and per test its status, its
log when there is one (a skip's reason, a failure's traceback) and its duration when non-zero;
``ptestresult.sections`` stands for the extra results oeqa stores beside the tests. With
``PARSEC_DEMO_POKY`` naming a poky checkout, the last test makes the file with poky's own
oeqa instead.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import parsec_demo_evidence as evidence
import pytest

from parsec_demo import cli
from parsec_demo.validate.reports import read_testresults, summary_line

QEMU_RUN = "runtime_parsec-tls-demo-image_qemuarm64_20261202101500"
FVP_RUN = "runtime_baremetal-image_fvp-rd-kronos_20261202113000"
NO_RSE_LOG = "no RSE console log on this machine (the target ParsecDemoQemuTarget names none)"
DEPENDENCY = (
    "Test case parsec_tls_demo.TlsHandshakeTest.test_handshake_in_a_container depends on "
    "parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host but it didn't pass/run."
)
TRACEBACK = (
    'Traceback (most recent call last):\n  File "parsec_tls_demo.py", line 240, in '
    "test_handshake_on_the_host\n    self.assert_handshake(status, output)\n"
    "AssertionError: 1 != 0 : . Performing the SSL/TLS handshake... failed"
)


def configuration(
    machine: str, start: str, image: str = "parsec-tls-demo-image", distro: str = "poky"
) -> dict[str, object]:
    return {
        "TEST_TYPE": "runtime", "MACHINE": machine, "DISTRO": distro,
        "IMAGE_BASENAME": image, "IMAGE_PKGTYPE": "rpm", "STARTTIME": start,
        "HOST_DISTRO": "debian-12",
        "LAYERS": {"meta": {"branch": "scarthgap", "commit": "72983ac3", "commit_count": 1}},
    }  # fmt: skip


TESTIMAGE_RESULTS = {
    QEMU_RUN: {
        "configuration": configuration("qemuarm64", "20261202101500"),
        "result": {
            "ping.PingTest.test_ping": {"duration": 0.51, "status": "PASSED"},
            "ssh.SSHTest.test_ssh": {"duration": 1.2, "status": "PASSED"},
            "parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host": {
                "duration": 3.02, "status": "FAILED", "log": TRACEBACK,
            },
            "parsec_tls_demo.TlsHandshakeTest.test_handshake_in_a_container": {
                "status": "SKIPPED", "log": DEPENDENCY,
            },
            "parsec_tls_demo.TlsHandshakeTest.test_rse_served_the_handshake": {
                "duration": 0.3, "status": "SKIPPED", "log": NO_RSE_LOG,
            },
            "parsec_tls_demo.NegativeTest.test_a_corrupted_certificate_is_refused": {
                "status": "UNKNOWN",
            },
            "ptestresult.sections": {"mbedtls": {"duration": "12", "log": "..."}},
        },
    },
    FVP_RUN: {
        "configuration": configuration(
            "fvp-rd-kronos", "20261202113000", image="baremetal-image", distro="nodistro"
        ),
        "result": {
            "parsec_tls_demo.TlsHandshakeTest.test_rse_served_the_handshake": {
                "duration": 41.7, "status": "PASSED",
            },
            "parsec_tls_demo.ParsecServiceTest.test_ping": {
                "duration": 2.0, "status": "ERROR", "log": "Traceback ...\nOSError: boom",
            },
        },
    },
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("restore_toolkit_logging")


def write(tmp_path: Path, document: object, name: str = "testresults.json") -> Path:
    path = tmp_path / name
    # As OETestResultJSONHelper writes it.
    path.write_text(json.dumps(document, sort_keys=True, indent=1))
    return path


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["report", *args])
    out, err = capsys.readouterr()
    return status, out, err


def suites(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {suite.get("name", ""): suite for suite in root.findall("testsuite")}


def test_junit_has_a_suite_per_run_and_skips_carry_their_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path, TESTIMAGE_RESULTS)
    output = tmp_path / "junit.xml"
    status, out, err = report(capsys, "junit", str(source), "-o", str(output))
    assert (status, err) == (0, "")
    found = suites(output)
    assert list(found) == [FVP_RUN, QEMU_RUN]  # the file's order (oeqa sorts its keys)
    qemu = found[QEMU_RUN]
    # ptestresult.sections is no test; UNKNOWN (never ran) is an error.
    counts = {k: qemu.get(k) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "6", "failures": "1", "errors": "1", "skipped": "2"}
    cases = {case.get("name"): case for case in qemu.findall("testcase")}
    assert cases["test_ping"].get("classname") == "ping.PingTest"
    skipped = cases["test_rse_served_the_handshake"].find("skipped")
    assert skipped is not None and skipped.get("message") == NO_RSE_LOG
    dependency = cases["test_handshake_in_a_container"].find("skipped")
    assert dependency is not None and dependency.get("message") == DEPENDENCY
    failure = cases["test_handshake_on_the_host"].find("failure")
    assert failure is not None and failure.text == TRACEBACK
    assert failure.get("message") == (
        "AssertionError: 1 != 0 : . Performing the SSL/TLS handshake... failed"
    )
    unknown = cases["test_a_corrupted_certificate_is_refused"].find("error")
    assert unknown is not None and "status UNKNOWN" in unknown.get("message", "")
    assert cases["test_ssh"].find("*") is None and cases["test_ssh"].get("time") == "1.20"
    fvp = found[FVP_RUN]
    assert (fvp.get("tests"), fvp.get("errors"), fvp.get("skipped")) == ("2", "1", "0")
    # Standard output: the summary line over every run, then each skip with its reason.
    lines = out.splitlines()
    assert lines[0] == f"3 passed, 2 skipped, 3 failed (1 of them errors); junit in {output}"
    assert lines[1:] == [
        f"skipped parsec_tls_demo.TlsHandshakeTest.test_handshake_in_a_container: {DEPENDENCY}",
        f"skipped parsec_tls_demo.TlsHandshakeTest.test_rse_served_the_handshake: {NO_RSE_LOG}",
    ]


def test_junit_of_one_run_and_the_default_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write(tmp_path, TESTIMAGE_RESULTS)
    monkeypatch.chdir(tmp_path)
    status, out, _ = report(capsys, "junit", str(source), "--result-id", FVP_RUN)
    assert status == 0 and out.startswith("1 passed, 0 skipped, 1 failed (1 of them errors);")
    assert list(suites(tmp_path / "junit.xml")) == [FVP_RUN]


def test_html_of_a_run_lists_skips_with_their_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path, {QEMU_RUN: TESTIMAGE_RESULTS[QEMU_RUN]})
    page = tmp_path / "report.html"
    status, out, _ = report(capsys, "html", str(source), "-o", str(page))
    assert status == 0 and out.startswith("2 passed, 2 skipped, 2 failed; html in ")
    text = page.read_text()
    assert '<p id="summary">2 passed, 2 skipped, 2 failed' in text
    assert f"<li>parsec_tls_demo.TlsHandshakeTest.test_rse_served_the_handshake: {NO_RSE_LOG}" in (
        text
    )
    assert "AssertionError: 1 != 0" in text
    assert "&quot;branch&quot;: &quot;scarthgap&quot;" in text, "LAYERS shown as JSON"


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    status, out, err = report(capsys, *args)
    assert status == 1 and out == "" and "Traceback" not in err
    [line] = err.splitlines()
    return line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        ("{not json", "is not JSON"),
        ("[]", "is not an oeqa testresults.json"),
        ("{}", "is not an oeqa testresults.json"),
        ('{"runtime_x": {"configuration": {}}}', "runtime_x has no 'result' object"),
        ('{"runtime_x": {"result": {"a.B.c": "PASSED"}}}', "the result of a.B.c is not an object"),
        ('{"runtime_x": {"result": {"a.B.c": {"status": 1}}}}', "a.B.c has a status or log"),
        ('{"runtime_x": {"result": {"a.B.c": {"status": "PASSED", "duration": "1"}}}}',
         "a.B.c has a duration that is not a number"),
        ('{"runtime_x": {"configuration": [], "result": {}}}', "'configuration' is not an object"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, says: str
) -> None:
    source = tmp_path / "testresults.json"
    if content is not None:
        source.write_text(content)
    line = one_line_error(capsys, "junit", str(source), "-o", str(tmp_path / "j.xml"))
    assert line.startswith(f"parsec-demo report junit: {source}") and says in line, line
    assert not (tmp_path / "j.xml").exists()


def test_a_run_that_is_not_there_or_not_chosen_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path, TESTIMAGE_RESULTS)
    line = one_line_error(capsys, "junit", str(source), "--result-id", "runtime_nothing")
    assert line == (
        f"parsec-demo report junit: {source} has no run runtime_nothing "
        f"(it has: {FVP_RUN}, {QEMU_RUN})"
    )
    line = one_line_error(capsys, "html", str(source), "-o", str(tmp_path / "r.html"))
    assert "holds 2 runs" in line and "choose one with --result-id" in line
    line = one_line_error(capsys, "junit", str(source), "-o", str(tmp_path / "no/dir/j.xml"))
    assert line.startswith("parsec-demo report junit: cannot write ") and "No such file" in line


def test_the_toolkit_s_own_testresults_read_back(tmp_path: Path) -> None:
    """What ``validate`` writes (reports.write_testresults) reads back as it was."""
    from parsec_demo.validate import reports
    from parsec_demo.validate.runner import CaseResult

    results = [
        CaseResult("m.C.test_a", "PASSED", 1.5),
        CaseResult("m.C.test_b", "SKIPPED", 0.0, "no RSE console log on this machine (x)"),
    ]
    config = {"IMAGE_BASENAME": "img", "MACHINE": "dev", "STARTTIME": "1"}
    result_id = reports.write_testresults(tmp_path / "t.json", results, config)
    [(found_id, (found_config, found))] = read_testresults(tmp_path / "t.json").items()
    assert (found_id, found_config) == (result_id, config)
    assert found == results
    assert summary_line(found) == "1 passed, 1 skipped, 0 failed"


#: Runs poky's own oeqa (OETestContext, OETestResult.logDetails) on cases that pass, fail,
#: skip with a reason and skip for a failed dependency, writing testresults.json.
POKY_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    poky_lib, cases, out = sys.argv[1:]
    sys.path.insert(0, poky_lib)
    from oeqa.core.context import OETestContext
    logger = logging.getLogger("oeqa")
    tc = OETestContext({}, logger)
    tc.loadTests([cases], modules=["sample"])
    result = tc.runTests()
    configuration = {"TEST_TYPE": "runtime", "MACHINE": "m", "IMAGE_BASENAME": "i",
                     "STARTTIME": "1"}
    result.logDetails(out, configuration, "runtime_i_m_1")
    """
)
POKY_CASES = textwrap.dedent(
    """
    from oeqa.core.case import OETestCase
    from oeqa.core.decorator.depends import OETestDepends

    class Sample(OETestCase):
        def test_a_passes(self):
            pass

        def test_b_fails(self):
            self.assertEqual(1, 2, "deliberately")

        def test_c_skips(self):
            self.skipTest("no RSE console log on this machine (the target T names none)")

        @OETestDepends(["sample.Sample.test_b_fails"])
        def test_d_needs_b(self):
            pass
    """
)


@pytest.mark.skipif(
    not os.environ.get("PARSEC_DEMO_POKY"), reason="PARSEC_DEMO_POKY names no poky checkout"
)
def test_what_poky_s_oeqa_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    poky_lib = Path(os.environ["PARSEC_DEMO_POKY"]) / "meta/lib"
    assert (poky_lib / "oeqa/core/runner.py").exists(), poky_lib
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "sample.py").write_text(POKY_CASES)
    subprocess.run(
        [sys.executable, "-c", POKY_SCRIPT, str(poky_lib), str(cases), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    source = tmp_path / "out/testresults.json"
    status, out, _ = report(capsys, "junit", str(source), "-o", str(tmp_path / "j.xml"))
    assert status == 0
    assert out.splitlines() == [
        f"1 passed, 2 skipped, 1 failed; junit in {tmp_path / 'j.xml'}",
        "skipped sample.Sample.test_c_skips: "
        "no RSE console log on this machine (the target T names none)",
        "skipped sample.Sample.test_d_needs_b: Test case sample.Sample.test_d_needs_b depends "
        "on sample.Sample.test_b_fails but it didn't pass/run.",
    ]
    [suite] = suites(tmp_path / "j.xml").values()
    failure = suite.find("testcase[@name='test_b_fails']/failure")
    assert failure is not None and failure.get("message") == (
        "AssertionError: 1 != 2 : deliberately"
    )


# --- the RSE calls the evidence cases record, drawn by `report html` ---------------------------

LAYER_LIB = Path(__file__).parents[2] / "meta-parsec-demo/lib"
#: A handshake's part of an RSE console, as the evidence case reads it.
HANDSHAKE_CONSOLE = "\n".join(
    [
        "[Crypto] psa_import_key: type=RSA_PUBLIC_KEY bits=2048 -> key 0x00000001",
        "[Crypto] psa_verify_hash: key 0x00000001 alg=RSA_PKCS1V15_SIGN(SHA_256) -> PSA_SUCCESS",
        "[Crypto] psa_destroy_key: key 0x00000001 -> PSA_SUCCESS",
        "[Crypto] psa_import_key: type=RSA_PUBLIC_KEY bits=2048 -> key 0x00000002",
        "[Crypto] psa_verify_hash: key 0x00000002 alg=RSA_PSS(SHA_256) -> PSA_SUCCESS",
        "[Crypto] psa_destroy_key: key 0x00000002 -> PSA_SUCCESS",
    ]
)
DRAWN = [
    (function, key, "PSA_SUCCESS")
    for key in (1, 2)
    for function in ("psa_import_key", "psa_verify_hash", "psa_destroy_key")
]


def _drawn_handshake(page: str) -> None:
    from test_reports import check_diagram

    assert "No RSE events were recorded" not in page
    check_diagram(page, DRAWN)


def test_the_evidence_recorded_in_testresults_is_drawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The layer's record_rse_calls puts the calls in oeqa's extraresults; testresults.json
    carries them beside the cases (as poky's logDetails merges extraresults); report html draws
    them, and lists them as no case."""
    from types import SimpleNamespace

    from parsec_demo.validate import oeqa_shim, reports
    from parsec_demo.validate.runner import CaseResult

    oeqa_shim.install(LAYER_LIB)
    layer = importlib.import_module("oeqa.runtime.parsec_demo_case")
    case = SimpleNamespace(tc=SimpleNamespace())
    calls = evidence.console_calls(HANDSHAKE_CONSOLE)
    layer.ParsecDemoCase.record_rse_calls(case, "handshake", calls)
    document = {
        QEMU_RUN: {
            "configuration": {"MACHINE": "qemuarm64"},
            "result": {
                "parsec_tls_demo.TlsHandshakeTest.test_rse_served_the_handshake": {
                    "status": "PASSED", "duration": 4.2
                },
                **case.tc.extraresults,
            },
        }
    }  # fmt: skip
    source = tmp_path / "testresults.json"
    source.write_text(json.dumps(document))
    status, out, _ = report(capsys, "html", str(source), "-o", str(tmp_path / "r.html"))
    assert status == 0 and out.startswith("1 passed, 0 skipped, 0 failed;"), out
    _drawn_handshake((tmp_path / "r.html").read_text())
    # What validate writes carries them the same way.
    results = [CaseResult("parsec_tls_demo.TlsHandshakeTest.test_rse_served_the_handshake",
                          "PASSED", 4.2)]  # fmt: skip
    events = evidence.calls_of_entry(case.tc.extraresults["parsec_tls_demo.rse_calls.handshake"])
    config = {"IMAGE_BASENAME": "img", "MACHINE": "dev", "STARTTIME": "1"}
    reports.write_testresults(tmp_path / "v.json", results, config, {"handshake": events})
    assert report(capsys, "html", str(tmp_path / "v.json"), "-o", str(tmp_path / "v.html"))[0] == 0
    _drawn_handshake((tmp_path / "v.html").read_text())


POKY_EVIDENCE_CASES = textwrap.dedent(
    """
    import sys

    sys.path.insert(0, {layer_lib!r})  # the layer's lib, as addpylib puts it on the path
    import parsec_demo_evidence
    from oeqa.core.case import OETestCase
    from oeqa.runtime.parsec_demo_case import ParsecDemoCase

    class Evidence(OETestCase):
        def test_records(self):
            calls = parsec_demo_evidence.console_calls({console!r})
            ParsecDemoCase.record_rse_calls(self, "handshake", calls)
    """
)


@pytest.mark.skipif(
    not os.environ.get("PARSEC_DEMO_POKY"), reason="PARSEC_DEMO_POKY names no poky checkout"
)
def test_poky_s_oeqa_writes_the_recorded_calls_and_report_draws_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    poky_lib = Path(os.environ["PARSEC_DEMO_POKY"]) / "meta/lib"
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "sample.py").write_text(
        POKY_EVIDENCE_CASES.format(layer_lib=str(LAYER_LIB), console=HANDSHAKE_CONSOLE)
    )
    subprocess.run(
        [sys.executable, "-c", POKY_SCRIPT, str(poky_lib), str(cases), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    source = tmp_path / "out/testresults.json"
    assert (
        "parsec_tls_demo.rse_calls.handshake"
        in json.loads(source.read_text())["runtime_i_m_1"]["result"]
    )
    status, out, _ = report(capsys, "html", str(source), "-o", str(tmp_path / "r.html"))
    assert status == 0 and out.startswith("1 passed, 0 skipped, 0 failed;"), out
    _drawn_handshake((tmp_path / "r.html").read_text())
