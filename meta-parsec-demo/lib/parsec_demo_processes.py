#
# SPDX-License-Identifier: MIT
#
"""Processes in the background, and the one shape of a failure that shows their log's tail.

Used by the parsec-demo toolkit for everything it starts (services, emulators, servers) and by
the layer's testimage controllers for the RSE model (``parsec_demo_rse``).

A process is started (``spawn``) in a session of its own, with its output appended to its log
file and no standard input, and is stopped (``stop_group``) with SIGTERM to its whole process
group, then SIGKILL if it does not go within a grace period. A service is ready when its socket
accepts a connection (``wait_for_socket``); one that dies or hangs during start-up is reported
with the last lines of its log and the log's path, so the failure explains itself::

    rse exited with status 1 during start-up
    last console lines:
    [RSE] Cannot open the key store: ...
    logs:
      runs/demo-host-.../rse-process.log

Only the standard library, in Python that a build host's python3 runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import stat
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    StrPath = str | os.PathLike[str]

#: How many lines a failure shows.
TAIL_LINES = 30
#: A kernel panic's register dump and call trace fill a tail by themselves; what made the
#: kernel panic is printed just before it. So a tail that would leave out any of the
#: PANIC_CONTEXT lines before a panic report starts with them (at most MAX_TAIL_LINES in all).
PANIC = "Kernel panic - not syncing"
PANIC_CONTEXT = 3
MAX_TAIL_LINES = 80


#: Longest Unix socket path the kernel (and QEMU) accept, less a margin.
SOCKET_PATH_MAX = 100


def socket_path(directory: StrPath, name: str) -> str:
    """Where a service whose files are in ``directory`` puts its socket ``name``: there, or,
    when that path is too long for a Unix socket (a deep checkout or build directory), in this
    user's private directory for ``directory`` under the temporary directory: the same path
    each time, so that a service restarted is found where it was (``release_socket``)."""
    path = os.path.join(os.fspath(directory), name)
    if len(path) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(os.path.abspath(directory))).hexdigest()[:16]
    private = os.path.join(tempfile.gettempdir(), f"parsec-demo-{digest}")
    try:
        os.mkdir(private, 0o700)
    except FileExistsError:
        status = os.lstat(private)
        if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
            raise OSError(f"{private} is not a directory of this user's") from None
        if status.st_mode & 0o077:
            raise OSError(f"{private} is open to other users") from None
    return os.path.join(private, name)


def release_socket(path: StrPath) -> None:
    """After a service's stop: a socket ``socket_path`` put in a private directory is removed,
    and that directory with it once no other socket is in it."""
    directory = os.path.dirname(os.fspath(path))
    if not os.path.basename(directory).startswith("parsec-demo-"):
        return
    if os.path.dirname(directory) != tempfile.gettempdir():
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(directory)


class StartError(RuntimeError):
    """A process that exited, or was not ready in time, during its start-up: the message is a
    ``failure_message``."""


def last_lines(text: str, lines: int = TAIL_LINES) -> str:
    all_lines = text.splitlines()
    start = max(0, len(all_lines) - lines)
    panics = [n for n, line in enumerate(all_lines[: start + PANIC_CONTEXT]) if PANIC in line]
    if panics:
        start = max(min(start, panics[-1] - PANIC_CONTEXT), len(all_lines) - MAX_TAIL_LINES, 0)
    return "\n".join(all_lines[start:])


def tail(path: StrPath, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of the file at ``path``; empty if it is missing or unreadable."""
    try:
        with open(path, errors="replace") as log:
            text = log.read()
    except OSError:
        return ""
    return last_lines(text, lines)


def failure_message(headline: str, console: str, logs: Sequence[StrPath]) -> str:
    """``headline``, the last lines of ``console`` (text), and the ``logs`` to read."""
    shown = last_lines(console).rstrip("\n") or "(none)"
    listing = "\n".join(f"  {os.fspath(log)}" for log in logs)
    return f"{headline}\nlast console lines:\n{shown}\nlogs:\n{listing}"


def log_failure(headline: str, console: StrPath, logs: Sequence[StrPath] = ()) -> str:
    """``failure_message`` with the console read from the file ``console``, listed first."""
    first = os.fspath(console)
    listing = [first, *(os.fspath(log) for log in logs if os.fspath(log) != first)]
    return failure_message(headline, tail(console), listing)


def spawn(
    command: Sequence[str],
    log_path: StrPath,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``command`` in the background, in a session (and process group) of its own, its standard
    output and error appended to ``log_path``, its standard input empty. It is no service of
    the service manager this may run under: ``NOTIFY_SOCKET`` is not passed on, so a daemon's
    READY=1 or STOPPING=1 never reaches the manager of, say, a CI runner's unit."""
    directory = os.path.dirname(os.fspath(log_path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    child_env = dict(os.environ if env is None else env)
    child_env.pop("NOTIFY_SOCKET", None)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=child_env,
            start_new_session=True,
        )


def stop_group(process: subprocess.Popen[bytes] | None, grace: float) -> int | None:
    """SIGTERM to the process group ``spawn`` made (daemons and emulators stop cleanly on it),
    SIGKILL after ``grace`` seconds; the exit status (None without a process)."""
    if process is None:
        return None
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def socket_accepts(path: StrPath) -> bool:
    """Whether the Unix socket at ``path`` accepts a connection."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def wait_until(condition: Callable[[], object], timeout: float, interval: float) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds, asked every ``interval``
    seconds (and once more at the end): the one way the toolkit and the layer wait."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(interval)


def wait_for_socket(
    name: str,
    process: subprocess.Popen[bytes],
    socket_path: StrPath,
    log_path: StrPath,
    timeout: float,
    interval: float = 0.02,
) -> None:
    """Until ``socket_path`` accepts connections. A ``StartError`` (showing the tail of
    ``log_path``) when ``process`` exits first, or is not ready within ``timeout`` seconds (it
    is then stopped)."""
    ready = wait_until(
        lambda: socket_accepts(socket_path) or process.poll() is not None, timeout, interval
    )
    if process.poll() is not None:
        headline = f"{name} exited with status {process.returncode} during start-up"
        raise StartError(log_failure(headline, log_path))
    if not ready:
        stop_group(process, grace=5)
        raise StartError(log_failure(f"{name} not ready after {timeout:.0f} s", log_path))


def start_serving(
    name: str,
    command: Sequence[str],
    log_path: StrPath,
    socket_path: StrPath,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``command`` started with ``spawn``, once its socket accepts connections
    (``wait_for_socket``: a ``StartError`` otherwise, the process stopped)."""
    process = spawn(command, log_path, env=env)
    try:
        wait_for_socket(name, process, socket_path, log_path, timeout)
    except BaseException:
        stop_group(process, grace=5)
        raise
    return process
