"""Process identities: what ties a temporary key to the process that made it."""

from __future__ import annotations

import os
import subprocess
import sys

from parsec_service import processes


def test_a_live_process_is_named_by_boot_pid_and_start_time() -> None:
    name = processes.identity(os.getpid())
    assert name is not None
    boot, pid, started = name.split(":")
    assert boot == processes.boot_id() and pid == str(os.getpid()) and started.isdigit()
    assert processes.alive(name)
    assert processes.is_process(name, os.getpid())
    assert not processes.is_process(name, os.getppid()), "another pid is another process"
    assert processes.identity(0) is None and processes.identity(-1) is None


def test_a_process_gone_is_never_alive_again_even_with_its_pid() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    name = processes.identity(child.pid)
    assert name is not None and processes.alive(name)
    child.kill()
    child.wait()
    assert processes.identity(child.pid) is None
    assert not processes.alive(name)
    assert not processes.is_process(name, child.pid)
    # A live pid with another start time (the pid reused) or of another boot is not it.
    mine = processes.identity(os.getpid())
    assert mine is not None
    boot, pid, started = mine.split(":")
    assert not processes.alive(f"{boot}:{pid}:{int(started) + 1}")
    assert not processes.is_process(f"{boot}:{pid}:{int(started) + 1}", os.getpid())
    assert not processes.alive(f"another-boot:{pid}:{started}")


def test_a_command_name_with_spaces_and_parentheses_is_read_past() -> None:
    script = (
        "import sys, time\n"
        "open('/proc/self/comm', 'w').write('x) (y z')\n"
        "print('up', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        with open(f"/proc/{child.pid}/stat", "rb") as stat:
            line = stat.read()
        assert b"(x) (y z)" in line
        expected = int(line.rsplit(b")", 1)[1].split()[19])
        assert processes.start_time(child.pid) == expected
    finally:
        child.kill()
        child.wait()
