"""The C load generator ``parsec-se-driver-bench`` (psa_verify_hash through Mbed TLS's PSA core
and the Parsec SE driver, from N processes) against a real Parsec service and RSE model, built
with ASan and UBSan; and ``parsec-demo bench parsec``, which runs it beside the Python clients.

No timing is asserted: only that every row is well formed and measured something.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from parsec_demo import bench
from parsec_demo.native_build import HostBuild
from support.running import RunningParsec
from support.se_driver_harness import SANITIZER_REPORTS, sanitizer_env


def run_bench(
    program: Path, *args: str, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program), *args],
        cwd=cwd,
        env={**os.environ, **sanitizer_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_no_sanitizer_report(stderr: str) -> None:
    found = [r for r in SANITIZER_REPORTS if r in stderr]
    assert not found, f"{found}:\n{stderr}"


@pytest.mark.parametrize("key", ["rsa2048", "p256"])
def test_every_process_verifies_through_the_service_and_cleans_up(
    key: str, host_build: HostBuild, parsec: RunningParsec, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    result = run_bench(
        host_build.driver_bench_sanitized,
        "--key", key, "--processes", "3", "--seconds", "0.3",
        "--socket", parsec.socket_path.name,  # relative to its working directory
        cwd=parsec.socket_path.parent,
        TMPDIR=str(scratch),
    )  # fmt: skip
    assert_no_sanitizer_report(result.stderr)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    report: dict[str, Any] = json.loads(line)
    assert report["program"] == "parsec-se-driver-bench"
    assert (report["key"], report["processes"], report["seconds"]) == (key, 3, 0.3)
    counts = report["process_counts"]
    assert len(counts) == 3 and all(count > 0 for count in counts)
    assert report["count"] == sum(counts)
    assert report["rate_per_s"] > 0
    assert 0 < report["p50_ms"] <= report["p99_ms"]
    assert report["client_cpu_s"] > 0
    # Every process destroyed its key, and left no files behind.
    assert parsec.client().list_keys() == []
    assert list(scratch.iterdir()) == []


def test_no_service_is_one_line_and_exit_status_1(host_build: HostBuild, tmp_path: Path) -> None:
    result = run_bench(
        host_build.driver_bench_sanitized,
        "--key", "p256", "--processes", "2", "--seconds", "0.2",
        "--socket", str(tmp_path / "absent.sock"),
        PARSEC_SE_DRIVER_QUIET="1",
    )  # fmt: skip
    assert_no_sanitizer_report(result.stderr)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "parsec-se-driver-bench: process 0: psa_import_key in the secure element failed: "
        "PSA status -145"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key", "rsa1024"], "--key must be rsa2048 or p256, not: rsa1024"),
        (["--processes", "0"], "--processes must be an integer from 1 to 256, not: 0"),
        (["--seconds", "soon"], "--seconds must be a number in (0, 3600], not: soon"),
        (["--bogus", "1"], "unknown option: --bogus"),
        (["--seconds"], "missing value or unknown option: --seconds"),
    ],
)
def test_a_bad_command_line_says_what_is_wrong(
    host_build: HostBuild, args: list[str], message: str
) -> None:
    result = run_bench(host_build.driver_bench, *args)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"parsec-se-driver-bench: {message}"


ROW = re.compile(
    r"^(?P<case>RSA-2048 PKCS#1 v1\.5|P-256 ECDSA)\s+(?P<kind>python|C)\s+(?P<clients>\d+)"
    r"\s+(?P<calls>[\d,]+)\s+(?P<rate>[\d,]+)\s+(?P<p50>[\d.]+)\s+(?P<p99>[\d.]+)"
    r"\s+(?P<cpu>\d+)"
    r"\s+(?P<local>[\d,]+)\s+(?P<ratio>[\d.]+)$"
)


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_bench_parsec_has_both_client_kinds_beside_the_baseline(
    host_build: HostBuild, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-") as runs:  # short: socket paths inside
        monkeypatch.setenv("PARSEC_DEMO_RUNS", runs)
        lines = list(bench.bench_parsec(0.2))
    command, header, *rows = lines
    assert command.startswith(f"C clients: {host_build.driver_bench} --socket ")
    assert command.endswith(" --seconds 0.2 --key rsa2048|p256 --processes 1|8")
    assert header.split() == [
        "PsaVerifyHash", "client", "clients", "calls", "Parsec", "/s", "p50", "ms", "p99", "ms",
        "client", "CPU", "us/call", "in-process", "/s", "ratio",
    ]  # fmt: skip
    matches = [ROW.match(row) for row in rows]
    assert all(matches), rows
    seen = [(m["case"], m["kind"], int(m["clients"])) for m in matches if m]
    assert seen == [
        (case, kind, clients)
        for case in ("RSA-2048 PKCS#1 v1.5", "P-256 ECDSA")
        for kind in ("python", "C")
        for clients in (1, 8)
    ]
    for m in matches:
        assert m is not None
        calls, rate, local = number(m["calls"]), number(m["rate"]), number(m["local"])
        assert calls > 0 and rate > 0 and local > 0
        assert number(m["p50"]) <= number(m["p99"])
        assert number(m["ratio"]) == pytest.approx(rate / local, rel=0.05, abs=0.002)
