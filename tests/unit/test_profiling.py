"""The py-spy profiles of the daemons: reading collapsed stacks into a table, recording one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from parsec_demo import profiling
from parsec_demo.cli import main

STACKS = """\
<module> (parsec_demo/__main__.py:7);serve (parsec_service/server.py:595);_read (parsec_service/server.py:516) 30
<module> (parsec_demo/__main__.py:7);serve (parsec_service/server.py:595) 10
run (threading.py:982);_work (parsec_service/server.py:540);verify (parsec_service/providers.py:323) 50
run (threading.py:982);_work (parsec_service/server.py:540);_read (parsec_service/server.py:520) 10
"""  # noqa: E501


def test_top_functions_weighs_own_and_cumulative_samples_per_call(tmp_path: Path) -> None:
    path = tmp_path / "stacks.txt"
    path.write_text(STACKS)
    profile = profiling.top_functions(path, calls=1000, rate=100, count=3)
    assert profile.samples == 100
    # 100 samples at 100 Hz are 1 s of Python CPU over 1000 calls: 1000 us a call.
    assert profile.total_us == pytest.approx(1000.0)
    rows = {row.function: row for row in profile.functions}
    assert list(rows) == [
        "parsec_service/providers.py:verify",
        "parsec_service/server.py:_read",  # two call sites, one function: 40 samples
        "parsec_service/server.py:serve",
    ]
    assert rows["parsec_service/server.py:_read"].own_us == pytest.approx(400.0)
    assert rows["parsec_service/server.py:serve"].own_us == pytest.approx(100.0)
    assert rows["parsec_service/server.py:serve"].cumulative_us == pytest.approx(400.0)
    lines = list(profiling.table(profile))
    assert "40.0%" in lines[2] and "parsec_service/server.py:_read" in lines[2]


def test_top_functions_refuses_what_is_not_a_profile(tmp_path: Path) -> None:
    path = tmp_path / "stacks.txt"
    path.write_text("this is not py-spy output\n")
    with pytest.raises(profiling.ProfileError, match=r"stacks\.txt:1: not a collapsed stack"):
        profiling.top_functions(path, calls=10, rate=100)
    with pytest.raises(profiling.ProfileError, match="number of calls"):
        profiling.top_functions(path, calls=0, rate=100)


BUSY = """
import time
def spin():
    total = 0
    for number in range(100_000):
        total += number
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    spin()
"""


@pytest.mark.slow
def test_recording_samples_a_running_python_process(tmp_path: Path) -> None:
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(0.3)
        with profiling.recording(busy.pid, tmp_path / "busy.txt", rate=100) as output:
            time.sleep(1.0)
    finally:
        busy.kill()
        busy.wait()
    profile = profiling.top_functions(output, calls=1, rate=100)
    assert profile.functions[0].function == "<string>:spin"
    # At most the recording's length (about 1 s) of one thread: the rate is applied right.
    assert 0 < profile.total_us < 3e6


def test_recording_says_why_it_cannot_profile(tmp_path: Path) -> None:
    no_such_process = 2**22 + 7  # above Linux's largest pid
    with (
        pytest.raises(profiling.ProfileError, match="py-spy could not profile process"),
        profiling.recording(no_such_process, tmp_path / "none.txt"),
    ):
        pass


@pytest.mark.usefixtures("restore_toolkit_logging")
def test_profile_is_for_the_parsec_benchmark_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "rse", "--profile", "/tmp/x"]) != 0
    assert "--profile profiles the parsec benchmark only" in capsys.readouterr().err
