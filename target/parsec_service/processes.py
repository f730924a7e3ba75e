"""Which process a client is, in a form that outlives the process and cannot be reused.

A process id alone is reused as soon as the process is gone. The kernel's boot id, the pid and
the process's start time (``/proc/<pid>/stat`` field 22, clock ticks since boot) together name
one process of one boot: once it has exited, no later process has the same three, not even
after a reboot. ``identity(pid)`` gives that name for a live process, ``alive(name)`` says
whether it still runs.

The pid is the one the kernel reports for the socket peer (``SO_PEERCRED``), already translated
into the service's PID namespace: clients in containers (their own PID namespaces) have one
here too. A peer the service's namespace cannot see is reported as pid 0; it has no identity.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

PROC = Path("/proc")
BOOT_ID = PROC / "sys/kernel/random/boot_id"


@cache
def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:  # no procfs here: every identity is then of this boot only
        return "unknown-boot"


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot; None if it does not exist."""
    if pid <= 0:
        return None
    try:  # os.open and os.read: a third of pathlib's cost, on every use of a temporary key
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the fields are
    # counted after its last ')'. Field 22 (starttime) is the 20th after comm.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def identity(pid: int) -> str | None:
    """``<boot id>:<pid>:<start time>`` of a live process; None for pid 0 or a process gone."""
    started = start_time(pid)
    if started is None:
        return None
    return f"{boot_id()}:{pid}:{started}"


def is_process(name: str, pid: int) -> bool:
    """Whether ``name`` (an ``identity``) is that of the live process ``pid``; a different pid
    is answered without reading ``/proc``."""
    if name.split(":", 2)[1:2] != [str(pid)]:
        return False
    return identity(pid) == name


def alive(name: str) -> bool:
    """Whether the process ``identity`` named is still running."""
    boot, _, rest = name.partition(":")
    pid, _, started = rest.partition(":")
    if boot != boot_id() or not pid.isdigit():
        return False
    return str(start_time(int(pid))) == started
