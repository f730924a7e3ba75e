"""Reports of a validation run: oeqa's testresults.json, JUnit XML, and a readable HTML page.

``testresults.json`` has oeqa's shape (``runtime_<image>_<machine>_<start>`` entries, each with
``configuration`` and ``result``: test name -> status, log, duration), so ``resulttool`` reads
what the toolkit's runner writes, and :func:`read_testresults` reads what ``testimage`` writes
(``parsec-demo report`` turns it into JUnit or HTML). The summary line counts passed, skipped
and failed tests, and each skipped test is listed with its reason: a skip is never silent.
The HTML page lists each test with its status and duration, attaches the console and service
logs to failures, and draws the handshake as a sequence diagram (client, server, Parsec, RSE)
from the RSE's events recorded during the handshake test, each PSA call where it happened.
"""

from __future__ import annotations

import html
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import parsec_demo_evidence as evidence
from parsec_demo_evidence import RseCall

from ..errors import UserError
from .runner import CaseResult

PARSEC_OPCODES = {
    "psa_import_key": "PsaImportKey",
    "psa_verify_hash": "PsaVerifyHash",
    "psa_destroy_key": "PsaDestroyKey",
    "psa_generate_key": "PsaGenerateKey",
    "psa_sign_hash": "PsaSignHash",
    "psa_export_public_key": "PsaExportPublicKey",
}


#: oeqa's statuses that count as passed and as skipped; every other one (FAILED, ERROR, and
#: UNKNOWN for a test an interrupted run never reached) counts as failed.
PASSED_STATUSES = ("PASSED", "EXPECTEDFAIL")
SKIPPED_STATUSES = ("SKIPPED",)


def failures(results: Sequence[CaseResult]) -> list[CaseResult]:
    """The results that count as failed."""
    return [r for r in results if r.status not in PASSED_STATUSES + SKIPPED_STATUSES]


def summary_line(results: Sequence[CaseResult]) -> str:
    """``N passed, M skipped, K failed``; when some of the failures are errors, how many."""
    passed = sum(1 for r in results if r.status in PASSED_STATUSES)
    skipped = sum(1 for r in results if r.status in SKIPPED_STATUSES)
    failed = len(failures(results))
    errors = sum(1 for r in results if r.status == "ERROR")
    line = f"{passed} passed, {skipped} skipped, {failed} failed"
    return line + (f" ({errors} of them errors)" if errors else "")


def skip_reason(result: CaseResult) -> str:
    """Why a test was skipped, in one line (oeqa keeps the skip's reason as its log)."""
    return _last_line(result.log) or "no reason given"


def skipped_lines(results: Sequence[CaseResult]) -> list[str]:
    """One line per skipped test: ``skipped <name>: <reason>``."""
    return [f"skipped {r.name}: {skip_reason(r)}" for r in results if r.status in SKIPPED_STATUSES]


#: The RSE calls a case saw, recorded beside the tests in testresults.json: the layer's evidence
#: cases put them in oeqa's extraresults (as ptest's raw logs are), under this prefix and the
#: diagram's name (``handshake``, ``mutual_tls``), with the calls as JSON in the log
#: (``parsec_demo_evidence.result_entry``). A status keeps every oeqa reader (resulttool) at
#: ease; the reports here draw them, not list them.
RSE_CALLS_RESULT = evidence.RESULT_PREFIX


def read_testresults(path: Path) -> dict[str, tuple[dict[str, Any], list[CaseResult]]]:
    """The runs a ``testresults.json`` holds (testimage's, or the toolkit's), by result id:
    their configuration and their test results, in the file's order. A UserError names the
    first thing wrong with the file. Entries without a status are extra results oeqa stores
    beside the tests (``ptestresult.sections``) and are left out."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not JSON ({exc})") from None
    if not isinstance(document, dict) or not document:
        raise UserError(
            f"{path} is not an oeqa testresults.json: expected an object of result ids, each "
            "with configuration and result"
        )
    runs: dict[str, tuple[dict[str, Any], list[CaseResult]]] = {}
    for result_id, run in document.items():
        where = f"{path}: {result_id}"
        if not isinstance(run, dict) or not isinstance(run.get("result"), dict):
            raise UserError(f"{where} has no 'result' object (not an oeqa testresults.json)")
        configuration = run.get("configuration", {})
        if not isinstance(configuration, dict):
            raise UserError(f"{where}: 'configuration' is not an object")
        results = []
        for name, entry in run["result"].items():
            if not isinstance(entry, dict):
                raise UserError(f"{where}: the result of {name} is not an object")
            if "status" not in entry or name.startswith(RSE_CALLS_RESULT):
                continue
            status, log, duration = entry["status"], entry.get("log", ""), entry.get("duration", 0)
            if not isinstance(status, str) or not isinstance(log, str):
                raise UserError(f"{where}: {name} has a status or log that is not a string")
            if not isinstance(duration, int | float) or isinstance(duration, bool):
                raise UserError(f"{where}: {name} has a duration that is not a number")
            results.append(CaseResult(name, status, round(float(duration), 2), log))
        runs[result_id] = (configuration, results)
    return runs


def recorded_rse_calls(path: Path, result_id: str) -> dict[str, list[RseCall]]:
    """The RSE calls the run ``result_id`` of a (readable) testresults.json recorded, by
    diagram name."""
    return rse_calls_in(json.loads(path.read_text())[result_id]["result"])


def rse_calls_in(results: Mapping[str, Any]) -> dict[str, list[RseCall]]:
    """The RSE calls among a run's results (oeqa's extraresults, or a testresults.json run's
    ``result``), by diagram name; what is not a list of calls is left out."""
    recorded: dict[str, list[RseCall]] = {}
    for name, entry in results.items():
        if not name.startswith(RSE_CALLS_RESULT) or not isinstance(entry, dict):
            continue
        try:
            recorded[name[len(RSE_CALLS_RESULT) :]] = evidence.calls_of_entry(entry)
        except (TypeError, KeyError, AttributeError, json.JSONDecodeError):
            continue
    return recorded


def write_testresults(
    path: Path,
    results: Sequence[CaseResult],
    configuration: Mapping[str, str],
    rse_calls: Mapping[str, Sequence[RseCall]] | None = None,
) -> str:
    """oeqa's testresults.json of ``results``, with the ``rse_calls`` (by diagram name) the
    cases saw beside them as the layer's evidence cases record them."""
    result_id = "runtime_{}_{}_{}".format(
        configuration["IMAGE_BASENAME"], configuration["MACHINE"], configuration["STARTTIME"]
    )
    entries: dict[str, Any] = {}
    for r in results:
        entry: dict[str, Any] = {"status": r.status, "duration": r.duration}
        if r.log:
            entry["log"] = r.log
        entries[r.name] = entry
    for name, calls in (rse_calls or {}).items():
        if calls:
            entries[RSE_CALLS_RESULT + name] = evidence.result_entry(calls)
    document = {result_id: {"configuration": dict(configuration), "result": entries}}
    path.write_text(json.dumps(document, indent=4, sort_keys=True) + "\n")
    return result_id


def write_junit(path: Path, results: Sequence[CaseResult], suite_name: str) -> None:
    """One JUnit test suite of ``results``."""
    write_junit_suites(path, {suite_name: results})


def write_junit_suites(path: Path, suites: Mapping[str, Sequence[CaseResult]]) -> None:
    """JUnit XML with one test suite per entry of ``suites`` (name -> results). A failure or
    an error carries its log (its message: the log's last line); a skip, its reason. A status
    JUnit has no word for (oeqa's UNKNOWN: the test never ran) is an error that says so."""
    root = ET.Element("testsuites")
    for suite_name, results in suites.items():
        failures = sum(1 for r in results if r.status == "FAILED")
        skipped = sum(1 for r in results if r.status in SKIPPED_STATUSES)
        errors = len(results) - failures - skipped
        errors -= sum(1 for r in results if r.status in PASSED_STATUSES)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=suite_name,
            tests=str(len(results)),
            failures=str(failures),
            errors=str(errors),
            skipped=str(skipped),
            time=f"{sum(r.duration for r in results):.2f}",
        )
        for r in results:
            classname, _, name = r.name.rpartition(".")
            case = ET.SubElement(
                suite, "testcase", classname=classname, name=name, time=f"{r.duration:.2f}"
            )
            if r.status == "FAILED":
                ET.SubElement(case, "failure", message=_last_line(r.log)).text = r.log
            elif r.status in SKIPPED_STATUSES:
                ET.SubElement(case, "skipped", message=skip_reason(r))
            elif r.status == "ERROR":
                ET.SubElement(case, "error", message=_last_line(r.log)).text = r.log
            elif r.status not in PASSED_STATUSES:
                message = f"status {r.status}: the test did not complete"
                ET.SubElement(case, "error", message=message).text = r.log or message
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _last_line(text: str) -> str:
    """The last non-blank line of ``text`` (of a traceback: the exception and its message),
    cut to 200 characters."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# --- the sequence diagram -----------------------------------------------------------------------

LANES = ("ssl_client1", "ssl_server", "Parsec service", "RSE")
#: One arrow of the diagram (from lane, to lane, label, kind); a "note" is a label alone.
Step = tuple[int, int, str, str]


def _psa_steps(call: RseCall, label: str = "") -> list[Step]:
    """One PSA call: client -> Parsec -> RSE and back (``label``: what it is for)."""
    opcode = PARSEC_OPCODES.get(call.function, call.function)
    if call.function in ("psa_import_key", "psa_generate_key", "psa_destroy_key"):
        detail = call.key_type or ""
    else:
        detail = call.alg or ""
    request = f"{label}: {opcode} {detail}" if label else f"{opcode} {detail}"
    return [
        (0, 2, request.strip(), "parsec"),
        (2, 3, f"{call.function} key 0x{call.key_id or 0:08x}", "psa"),
        (3, 2, call.status, "status"),
        (2, 0, "Success" if call.ok else "error", "parsec"),
    ]


def handshake_steps(events: Sequence[RseCall]) -> list[Step]:
    """The demo's handshake: the server's signatures checked in the RSE."""
    steps: list[Step] = [(0, 1, "ClientHello", "tls")]
    steps.append((1, 0, "ServerHello, Certificate, ServerKeyExchange", "tls"))
    for event in events:
        steps += _psa_steps(event)
    steps.append((0, 1, "ClientKeyExchange, Finished", "tls"))
    steps.append((1, 0, "Finished; GET / -> page", "tls"))
    return steps


def mutual_tls_steps(events: Sequence[RseCall]) -> list[Step]:
    """Provisioning (the key pair made in the RSE, the CSR signed there), then the first
    mutual-TLS handshake: the server's signatures checked in the RSE, and the client's
    CertificateVerify signed there with the provisioned key."""
    signs = [i for i, e in enumerate(events) if e.function == "psa_sign_hash"]
    csr_end = signs[0] + 1 if signs else len(events)
    handshake_end = signs[1] + 1 if len(signs) > 1 else len(events)
    steps: list[Step] = [(0, 0, "parsec_client_key generate: the client's key pair", "note")]
    for event in events[:csr_end]:
        is_csr = event.function == "psa_sign_hash"
        steps += _psa_steps(event, "CSR" if is_csr else "")
    steps.append((0, 0, "cert_write (the client CA) issues the client's certificate", "note"))
    steps.append((0, 1, "ClientHello", "tls"))
    steps.append((1, 0, "ServerHello, Certificate, ServerKeyExchange, CertificateRequest", "tls"))
    for event in events[csr_end:handshake_end]:
        is_client_signature = event.function == "psa_sign_hash"
        steps += _psa_steps(event, "CertificateVerify" if is_client_signature else "")
    steps.append((0, 1, "Certificate, ClientKeyExchange, CertificateVerify, Finished", "tls"))
    steps.append((1, 0, "Finished; GET / -> page", "tls"))
    return steps


def sequence_svg(events: Sequence[RseCall], mutual: bool = False) -> str:
    """client <-> server around the handshake; each PSA call client -> Parsec -> RSE and back.
    ``mutual``: the events of the mutual-TLS case, provisioning first (``mutual_tls_steps``)."""
    steps = mutual_tls_steps(events) if mutual else handshake_steps(events)
    width, lane, top, gap = 980, 245, 60, 30
    height = top + gap * (len(steps) + 1)
    x = [lane // 2 + i * lane for i in range(len(LANES))]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'class="sequence" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="8" refY="4" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
    ]
    for i, name in enumerate(LANES):
        parts.append(
            f'<text x="{x[i]}" y="30" text-anchor="middle" font-weight="bold" class="lane">'
            f"{html.escape(name)}</text>"
        )
        parts.append(
            f'<line x1="{x[i]}" y1="40" x2="{x[i]}" y2="{height - 10}" '
            'stroke="#999" stroke-dasharray="4"/>'
        )
    colours = {
        "tls": "#555",
        "parsec": "#1f5fa8",
        "psa": "#a8431f",
        "status": "#2e7d32",
        "note": "#000",
    }
    for n, (start, end, label, kind) in enumerate(steps):
        y = top + gap * n
        colour = colours[kind]
        if kind == "note":
            parts.append(
                f'<text x="{x[start] - lane // 2 + 8}" y="{y + 4}" font-style="italic" '
                f'class="note">{html.escape(label)}</text>'
            )
            continue
        parts.append(
            f'<line x1="{x[start]}" y1="{y}" x2="{x[end]}" y2="{y}" stroke="{colour}" '
            f'marker-end="url(#arrow)" class="step {kind}"/>'
        )
        parts.append(
            f'<text x="{(x[start] + x[end]) / 2}" y="{y - 5}" text-anchor="middle" fill="{colour}">'
            f"{html.escape(label)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def write_html(
    path: Path,
    results: Sequence[CaseResult],
    configuration: Mapping[str, str],
    handshake_events: Sequence[RseCall],
    logs: Mapping[str, str],
    mutual_tls_events: Sequence[RseCall] = (),
) -> None:
    """The report page; ``mutual_tls_events``: the RSE's calls during the mutual-TLS case,
    drawn as a second diagram when there are any."""
    rows = []
    for r in results:
        detail = ""
        if r.status not in PASSED_STATUSES + SKIPPED_STATUSES:
            attached = "".join(
                f"<details><summary>{html.escape(name)}</summary><pre>{html.escape(text)}</pre></details>"
                for name, text in logs.items()
            )
            detail = f"<pre>{html.escape(r.log)}</pre>{attached}"
        elif r.status in SKIPPED_STATUSES:
            detail = html.escape(skip_reason(r))
        rows.append(
            f'<tr class="{r.status.lower()}"><td>{html.escape(r.name)}</td>'
            f'<td class="status">{r.status}</td><td>{r.duration:.1f} s</td><td>{detail}</td></tr>'
        )
    summary = html.escape(summary_line(results))
    skips = "".join(
        f"<li>{html.escape(r.name)}: {html.escape(skip_reason(r))}</li>"
        for r in results
        if r.status in SKIPPED_STATUSES
    )
    skipped_list = f'<h2>Skipped</h2><ul id="skipped">{skips}</ul>' if skips else ""
    config_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in configuration.items()
    )
    diagram = (
        sequence_svg(handshake_events)
        if handshake_events
        else "<p>No RSE events were recorded for the handshake.</p>"
    )
    mutual = ""
    if mutual_tls_events:
        mutual = (
            "<h2>Mutual TLS: the client's key in the RSE</h2>\n<p>The client's key pair is "
            "generated in the RSE and signs its CSR there; in the handshake the server's "
            "signatures are checked in the RSE and the client's CertificateVerify is signed "
            "there, with that key (the case's first handshake, TLS 1.2).</p>\n"
            + sequence_svg(mutual_tls_events, mutual=True)
        )
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Parsec TLS demo validation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.passed .status {{ color: #2e7d32; }}
tr.failed .status, tr.error .status, tr.unknown .status {{ color: #c62828; font-weight: bold; }}
tr.skipped .status {{ color: #777; }}
pre {{ white-space: pre-wrap; max-height: 30em; overflow: auto; }}
</style></head>
<body>
<h1>Parsec TLS demo validation</h1>
<p id="summary">{summary} &mdash; generated {generated}</p>
<h2>Configuration</h2><table id="configuration">{config_rows}</table>
<h2>Tests</h2>
<table id="results"><tr><th>test</th><th>status</th><th>duration</th><th>details</th></tr>
{"".join(rows)}
</table>
{skipped_list}
<h2>The handshake</h2>
<p>Each PSA call of the client's handshake as the RSE recorded it: through the Parsec service to
the RSE crypto service and back.</p>
{diagram}
{mutual}
</body></html>
"""
    path.write_text(page)
