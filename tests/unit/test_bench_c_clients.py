"""How ``bench parsec`` runs the C load generator and reads its report, with stand-in programs
(the real one runs in tests/integration/test_se_driver_bench.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from parsec_demo.bench import BenchError, LoadResult, c_client_command, run_c_clients

REPORT = {
    "program": "parsec-se-driver-bench", "key": "p256", "processes": 2, "seconds": 0.5,
    "count": 400, "rate_per_s": 801.5, "p50_ms": 1.25, "p99_ms": 4.5, "client_cpu_s": 0.02,
    "process_counts": [200, 200],
}  # fmt: skip


def stand_in(tmp_path: Path, script: str) -> Path:
    program = tmp_path / "parsec-se-driver-bench"
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(0o755)
    return program


def test_the_command_line_names_every_choice(tmp_path: Path) -> None:
    command = c_client_command(tmp_path / "bench", tmp_path / "parsec.sock", "rsa2048", 8, 0.5)
    assert command == [
        str(tmp_path / "bench"), "--socket", str(tmp_path / "parsec.sock"), "--seconds", "0.5",
        "--key", "rsa2048", "--processes", "8",
    ]  # fmt: skip


def test_a_report_is_read(tmp_path: Path) -> None:
    program = stand_in(tmp_path, f"echo '{json.dumps(REPORT)}'")
    result = run_c_clients([str(program)], 0.5)
    assert result == LoadResult(400, 801.5, 1.25, 4.5, 0.02)
    assert result.client_cpu_us_per_call == pytest.approx(50.0)


def test_a_failure_is_its_last_line(tmp_path: Path) -> None:
    program = stand_in(
        tmp_path,
        "echo 'parsec-se-driver: cannot reach the service' >&2\n"
        "echo 'parsec-se-driver-bench: process 0: psa_import_key failed: PSA status -145' >&2\n"
        "exit 1",
    )
    with pytest.raises(BenchError) as raised:
        run_c_clients([str(program)], 0.5)
    assert str(raised.value) == (
        "parsec-se-driver-bench: process 0: psa_import_key failed: PSA status -145"
    )


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("not json", "parsec-se-driver-bench printed 'not json\\n'"),
        ('{"count": 1}', "parsec-se-driver-bench printed"),
        (json.dumps({**REPORT, "count": 0}), "parsec-se-driver-bench made no call in its time"),
    ],
)
def test_a_report_it_cannot_use_is_an_error(tmp_path: Path, output: str, message: str) -> None:
    program = stand_in(tmp_path, f"echo '{output}'")
    with pytest.raises(BenchError, match="^" + re.escape(message)):
        run_c_clients([str(program)], 0.5)
