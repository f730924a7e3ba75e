"""Reports from an oeqa testresults.json: what testimage writes (${LOG_DIR}/oeqa/testresults.json,
that is build/tmp/log/oeqa/ in a kas build) or what `parsec-demo validate` writes.

  report junit TESTRESULTS.json [-o junit.xml]   JUnit XML, one test suite per run in the file
  report html TESTRESULTS.json [-o report.html]  the validation page (tests, statuses, skip
                                                 reasons, failure logs); a file with several
                                                 runs needs --result-id

Skipped tests carry their reason (oeqa keeps it as the test's log): <skipped message=...> in
JUnit, a line of its own on the page and on standard output, after the summary line
("N passed, M skipped, K failed"). The exit status is 0 once the report is written, whatever
the tests' results: the job that ran them fails on its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from parsec_service.cli_help import add_command

from ..errors import UserError
from ..validate.reports import (
    read_testresults,
    recorded_rse_calls,
    skipped_lines,
    summary_line,
    write_html,
    write_junit_suites,
)
from ..validate.runner import CaseResult

NAME = "report"
HELP = "JUnit XML or an HTML page from an oeqa testresults.json (testimage's or validate's)"
FORMATS = {"junit": "junit.xml", "html": "report.html"}
EXAMPLES = (
    "html build/tmp/log/oeqa/testresults.json -o report.html",
    "junit runs/validate-.../report/testresults.json",
)


def setup_parser(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="report_format", required=True, metavar="FORMAT")
    for name, default in FORMATS.items():
        sub = add_command(
            formats,
            name,
            f"write {default} from a testresults.json",
            [f"testresults.json -o {default}", "testresults.json --result-id RESULT_ID"],
            f"Write {name} from an oeqa testresults.json.",
        )
        sub.add_argument("testresults", type=Path, metavar="TESTRESULTS.json")
        sub.add_argument(
            "-o", "--output", type=Path, default=Path(default), help=f"(default: {default})"
        )
        sub.add_argument(
            "--result-id",
            help="the run to report, when the file holds several (default: every run for "
            "junit; the only run for html)",
        )


def run(args: argparse.Namespace) -> int:
    runs = read_testresults(args.testresults)
    if args.result_id is not None:
        if args.result_id not in runs:
            raise UserError(
                f"{args.testresults} has no run {args.result_id} (it has: {', '.join(runs)})"
            )
        runs = {args.result_id: runs[args.result_id]}
    try:
        if args.report_format == "junit":
            write_junit_suites(args.output, {result_id: run[1] for result_id, run in runs.items()})
        else:
            configuration, results = _one_run(args.testresults, runs)
            calls = recorded_rse_calls(args.testresults, next(iter(runs)))
            write_html(
                args.output,
                results,
                configuration,
                calls.get("handshake", []),
                {},
                calls.get("mutual_tls", []),
            )
    except OSError as exc:
        raise UserError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    everything = [result for _, results in runs.values() for result in results]
    print(f"{summary_line(everything)}; {args.report_format} in {args.output}")
    for line in skipped_lines(everything):
        print(line)
    return 0


def _one_run(
    path: Path, runs: dict[str, tuple[dict[str, Any], list[CaseResult]]]
) -> tuple[dict[str, str], list[CaseResult]]:
    if len(runs) != 1:
        raise UserError(
            f"{path} holds {len(runs)} runs ({', '.join(runs)}): choose one with --result-id"
        )
    [(configuration, results)] = runs.values()
    # testimage's configuration holds objects too (LAYERS: each layer's branch and commit).
    shown = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in configuration.items()}
    return shown, results
