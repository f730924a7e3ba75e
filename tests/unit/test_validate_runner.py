"""The oeqa stand-in and runner: ordering by dependencies, skips, timeouts, results, reports."""

from __future__ import annotations

import importlib
import json
import logging
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import parsec_demo_evidence as evidence
import parsec_demo_machine as machine_steps
import pytest

from parsec_demo.paths import layer_lib
from parsec_demo.validate import oeqa_shim, reports, runner
from parsec_demo.validate.runner import (
    CaseResult,
    cases_dir,
    collect,
    run_tests,
)

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
    oeqa_shim.install(layer_lib())
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
    calls = evidence.console_calls(RSE_CONSOLE)
    assert [(c.function, c.key_id, c.alg, c.status) for c in calls] == [
        ("psa_import_key", 7, None, "PSA_SUCCESS"),
        ("psa_verify_hash", 7, "RSA_PKCS1V15_SIGN(SHA_256)", "PSA_SUCCESS"),
        ("psa_destroy_key", 7, None, "PSA_SUCCESS"),
        ("psa_verify_hash", 8, "ECDSA_ANY", "PSA_ERROR_INVALID_SIGNATURE"),
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
    svg = reports.sequence_svg([evidence.RseCall.from_event(e) for e in events])
    assert svg.count('class="step psa"') == 2
    assert "PsaImportKey RSA_PUBLIC_KEY" in svg and "psa_verify_hash key 0x00000001" in svg
    for lane in reports.LANES:
        assert lane in svg


def test_an_rse_with_only_comms_traces_still_gives_evidence() -> None:
    trace = (
        "[RSE-COMMS] Received message: protocol_ver=0 seq_num=1 client_id=0x0000 handle=0x40000100"
    )
    assert evidence.console_calls(trace) == []
    assert evidence.comms_problem("\n".join([trace] * 6), 2) is None
    # Two calls cannot serve two signatures.
    assert evidence.comms_problem("\n".join([trace] * 2), 2) == "2 RSE crypto calls, fewer than 6"


# --- the RSE evidence case, against a stand-in machine -------------------------------------------

EVIDENCE_CASE = "parsec_demo_handshake.TlsHandshakeTest.test_rse_served_the_handshake"
HANDSHAKE_CASE = "parsec_demo_handshake.TlsHandshakeTest.test_handshake_on_the_host"
CLIENT_OUTPUT = """
  . Seeding the random number generator... ok
  . Loading the CA root certificate ... ok (0 skipped)
  . Connecting to tcp/127.0.0.1/4433... ok
  . Setting up the SSL/TLS structure... ok
  . Performing the SSL/TLS handshake... ok
  . Verifying peer X.509 certificate... ok
  > Write to server: 18 bytes written

GET / HTTP/1.0

  < Read from server: 152 bytes read

HTTP/1.0 200 OK
Content-Type: text/html

<h2>Mbed TLS Test Server</h2>
<p>Successful connection using: TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256</p>
"""


#: A handshake that passed while the service came back (the restart case, 2026-12-03): the
#: driver's line on stderr landed inside the handshake's step line on stdout.
INTERLEAVED_PASS = CLIENT_OUTPUT.replace(
    "handshake... ok\n",
    "handshake...parsec-se-driver: cannot reach the Parsec service at /run/parsec/parsec.sock: "
    "No such file or directory\n ok\n",
)


def test_a_handshake_is_judged_with_the_driver_s_lines_read_out_of_the_way() -> None:
    assert "handshake... ok" not in INTERLEAVED_PASS
    assert machine_steps.handshake_problem(0, INTERLEAVED_PASS) is None
    failed = INTERLEAVED_PASS.replace("\n ok\n", "\n failed\n", 1)
    assert "Performing the SSL/TLS handshake... ok" in str(
        machine_steps.handshake_problem(0, failed)
    )
    assert machine_steps.handshake_problem(1, INTERLEAVED_PASS) == (
        "exit status 1, expected a successful handshake"
    )


def served(key: int, verify: str = "PSA_SUCCESS") -> list[str]:
    """The RSE model's console lines for one verified signature."""
    return [
        f"[Crypto] psa_import_key: type=RSA_PUBLIC_KEY bits=2048 lifetime=persistent "
        f"-> key 0x{key:08x}",
        f"[Crypto] psa_verify_hash: key 0x{key:08x} alg=RSA_PKCS1V15_SIGN(SHA_256) -> {verify}",
        f"[Crypto] psa_destroy_key: key 0x{key:08x} -> PSA_SUCCESS",
    ]


class HandshakeMachine:
    """Answers the handshake cases' commands; each ssl_client1 run appends ``rse_lines`` to the
    RSE console log at ``rse_log`` (when it names one), as the RSE would."""

    def __init__(self, rse_log: str | None, rse_lines: list[str]) -> None:
        if rse_log is not None:
            self.rse_log = rse_log
        self.rse_lines = rse_lines
        self.commands: list[str] = []

    def run(self, command: str, timeout: float | None = None) -> tuple[int, str]:
        self.commands.append(command)
        if "ssl_client1" in command:
            if self.rse_lines and getattr(self, "rse_log", None):
                with open(self.rse_log, "a") as log:
                    log.write("".join(line + "\n" for line in self.rse_lines))
            return 0, CLIENT_OUTPUT
        if "systemctl is-active" in command:
            return 0, "active"
        if command == "parsec-tool ping":
            return 0, "1.0"
        return 0, ""


def run_evidence(machine: object) -> dict[str, CaseResult]:
    oeqa_shim.install(layer_lib())
    tests = [
        t
        for t in collect(cases_dir(), ["parsec_demo_service", "parsec_demo_handshake"])
        if runner.test_name(t) in (EVIDENCE_CASE, HANDSHAKE_CASE)
        or runner.test_name(t).startswith("parsec_demo_service.ParsecServiceTest.")
    ]
    td = {"MACHINE": "qemu-test", "IMAGE_PKGS": ("parsec-mbedtls-demo",)}
    return {r.name: r for r in run_tests(tests, machine, td)}


def test_the_evidence_case_passes_with_a_triple_per_signature(tmp_path: Path) -> None:
    log = tmp_path / "rse-console.log"
    log.write_text("[RSE] booted\n")
    machine = HandshakeMachine(str(log), served(1) + served(2))
    results = run_evidence(machine)
    assert results[HANDSHAKE_CASE].status == "PASSED", results[HANDSHAKE_CASE].log
    assert results[EVIDENCE_CASE].status == "PASSED", results[EVIDENCE_CASE].log
    # It ran a handshake of its own and left the server stopped.
    assert sum("ssl_client1" in c for c in machine.commands) == 2
    last_client = max(n for n, c in enumerate(machine.commands) if "ssl_client1" in c)
    assert machine_steps.STOP_SERVER in machine.commands[last_client:]


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ([], "the RSE did not serve 2 verification(s)"),
        (served(1), "the RSE did not serve 2 verification(s)"),
        (served(1) + served(2, "PSA_ERROR_INVALID_SIGNATURE"), "PSA_ERROR_INVALID_SIGNATURE"),
        (served(1) + served(2)[:2] + served(3)[2:], "a key was left in the RSE"),
    ],
    ids=["nothing", "one signature", "a failed verify", "a key left"],
)
def test_the_evidence_case_fails_without_the_evidence(
    tmp_path: Path, lines: list[str], says: str
) -> None:
    log = tmp_path / "rse-console.log"
    log.write_text("")
    result = run_evidence(HandshakeMachine(str(log), lines))[EVIDENCE_CASE]
    assert result.status == "FAILED" and says in result.log, result.log


def test_the_evidence_case_is_skipped_with_its_reason_without_an_rse_log(
    tmp_path: Path,
) -> None:
    results = run_evidence(HandshakeMachine(None, served(1) + served(2)))
    assert results[HANDSHAKE_CASE].status == "PASSED"
    skipped = results[EVIDENCE_CASE]
    assert skipped.status == "SKIPPED"
    assert (
        skipped.log == "no RSE console log on this machine (the target HandshakeMachine names none)"
    )
    missing = tmp_path / "gone.log"
    skipped = run_evidence(HandshakeMachine(str(missing), []))[EVIDENCE_CASE]
    assert (skipped.status, skipped.log) == (
        "SKIPPED", f"no RSE console log on this machine ({missing} does not exist)",
    )  # fmt: skip
    # The reason reaches the reports: JUnit's <skipped message=...> and the summary.
    reports.write_junit(tmp_path / "junit.xml", [skipped], "parsec_tls_demo")
    element = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/skipped")
    assert element is not None and element.get("message") == skipped.log
    assert reports.skipped_lines([skipped]) == [f"skipped {EVIDENCE_CASE}: {skipped.log}"]


def test_only_a_string_names_an_rse_log() -> None:
    """meta-arm's OEFVPTarget answers any attribute it lacks with a function."""
    oeqa_shim.install(layer_lib())
    module = importlib.import_module("oeqa.runtime.parsec_demo_case")

    class AnswersEverything:
        def __getattr__(self, name: str) -> object:
            return lambda *args: None

    assert module.rse_log_path(AnswersEverything()) is None
    assert module.missing_rse_log(AnswersEverything()) == (
        "no RSE console log on this machine (the target AnswersEverything names none)"
    )
