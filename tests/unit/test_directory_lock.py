"""One daemon per state directory: the lock, its refusal, and its end with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from parsec_service.directory_lock import LOCK_NAME, DirectoryInUse, DirectoryLock


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    first = DirectoryLock(tmp_path, "RSE model")
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    with pytest.raises(DirectoryInUse, match=rf"in use by another RSE model \(pid {os.getpid()}\)"):
        DirectoryLock(tmp_path, "RSE model")
    first.release()
    first.release()  # twice is harmless
    DirectoryLock(tmp_path, "RSE model").release()


def test_a_holder_killed_leaves_no_stale_lock(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from parsec_service.directory_lock import DirectoryLock\n"
        "DirectoryLock(__import__('pathlib').Path(sys.argv[1]), 'RSE model')\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(DirectoryInUse, match=rf"\(pid {holder.pid}\)"):
            DirectoryLock(tmp_path, "RSE model")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    DirectoryLock(tmp_path, "RSE model").release()
