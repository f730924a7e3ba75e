"""A LAVA job's results as the validation's reports: oeqa's ``testresults.json``, JUnit XML and
the HTML page, the same files ``parsec-demo validate`` writes.

The input is what LAVA's results API gives for a job (``lavacli results JOB --yaml``, or the
REST API's ``jobs/<id>/tests/``): a list of test cases, each with its ``suite`` (the test
definition's, numbered by LAVA as ``<n>_<name>``, or ``lava`` for LAVA's own actions: deploy,
boot, the user commands, the job itself), ``name`` and ``result`` (pass, fail, skip, unknown).
Each becomes a case named ``lava.<suite>.<name>`` (the number dropped); LAVA's own actions stay
in, so that a boot that failed is a failed case, not an empty report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..validate import reports
from ..validate.runner import CaseResult

#: LAVA's results in oeqa's words.
STATUSES = {"pass": "PASSED", "fail": "FAILED", "skip": "SKIPPED", "unknown": "UNKNOWN"}


class ResultsError(UserError):
    pass


def read(path: Path) -> list[dict[str, Any]]:
    """The test cases of a LAVA results file; a ResultsError says what is wrong with it."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())  # YAML's messages span lines
        raise ResultsError(f"{path}: cannot read it as YAML ({reason})") from None
    if not isinstance(data, list) or not all(isinstance(case, dict) for case in data):
        raise ResultsError(f"{path} is not LAVA's results of a job (a list of test cases)")
    for n, case in enumerate(data):
        missing = [key for key in ("suite", "name", "result") if key not in case]
        if missing:
            raise ResultsError(f"{path}: test case {n + 1} has no {', '.join(missing)}")
        if str(case["result"]) not in STATUSES:
            raise ResultsError(f"{path}: test case {n + 1} has the result {case['result']!r}")
    cases: list[dict[str, Any]] = data
    return cases


def case_results(cases: Sequence[dict[str, Any]]) -> list[CaseResult]:
    results = []
    for case in cases:
        suite = re.sub(r"^\d+_", "", str(case["suite"]))
        metadata = case.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
        log = "\n".join(
            f"{k}: {v}" for k, v in metadata.items() if k in ("error_msg", "error_type")
        )
        try:
            seconds = round(float(metadata.get("duration", 0)), 2)
        except (TypeError, ValueError):
            seconds = 0.0
        results.append(
            CaseResult(f"lava.{suite}.{case['name']}", STATUSES[str(case["result"])], seconds, log)
        )
    return results


def write_reports(
    cases: Sequence[dict[str, Any]], report_dir: Path, job_id: str, machine: str
) -> list[CaseResult]:
    """``testresults.json``, ``junit.xml`` and ``report.html`` of a LAVA job into
    ``report_dir``; the results."""
    results = case_results(cases)
    configuration = {
        "IMAGE_BASENAME": "parsec-tls-demo-image",
        "MACHINE": machine,
        "STARTTIME": job_id,
        "LAVA_JOB_ID": job_id,
        "TEST_TYPE": "runtime",
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    reports.write_testresults(report_dir / "testresults.json", results, configuration)
    reports.write_junit(report_dir / "junit.xml", results, f"lava_{machine}")
    reports.write_html(report_dir / "report.html", results, configuration, [], {})
    return results
