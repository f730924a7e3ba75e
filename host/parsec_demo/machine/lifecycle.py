"""What every machine runner does the same way, whatever the emulator: start (and undo a
half-done start), wait for the boot (a login prompt on the default console, then SSH
answering), explain a failed boot with the console's last lines and the logs, and stop the
emulator's whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

from ..services import tail
from .ssh_target import TargetError, wait_for_banner


class BootError(RuntimeError):
    pass


class Machine(ABC):
    """A machine the runner starts and stops; a context manager that stops it on the way out.

    A start that fails half-way (a boot error, SIGINT during the boot) stops whatever it had
    started, so no emulator, console reader or port lease outlives the error.
    """

    def start(self, wait: bool = True) -> Self:
        """Start the machine; with ``wait``, until its login prompt and SSH answer."""
        try:
            self._start(wait)
        except BaseException:
            self.stop()
            raise
        return self

    @abstractmethod
    def _start(self, wait: bool) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Stop everything ``_start`` started; safe to call at any point, and twice."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def boot_failure(reason: str, console: Path, logs: Sequence[Path]) -> str:
    text = tail(console, 30) if console.exists() else "(no console output)"
    listing = "\n".join(f"  {p}" for p in logs)
    return f"boot failed: {reason}\nlast console lines:\n{text}\nlogs:\n{listing}"


def wait_for_boot(
    process: subprocess.Popen[bytes],
    name: str,
    console: Path,
    ssh_port: int,
    timeout: float,
    list_logs: Callable[[], Sequence[Path]],
) -> None:
    """Until ``login:`` shows on ``console`` and SSH answers; BootError with the tail if not.

    ``list_logs`` is asked at the failure, when every log the machine wrote exists.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise BootError(
                boot_failure(
                    f"{name} exited with status {process.returncode}", console, list_logs()
                )
            )
        if console.exists() and b"login:" in console.read_bytes():
            break
        if time.monotonic() > deadline:
            reason = f"no login prompt within {timeout:.0f} s"
            raise BootError(boot_failure(reason, console, list_logs()))
        time.sleep(0.25)
    try:
        wait_for_banner("127.0.0.1", ssh_port, max(5.0, deadline - time.monotonic()))
    except TargetError as exc:
        raise BootError(boot_failure(str(exc), console, list_logs())) from None


def stop_group(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM to the process group (emulators quit cleanly on it), SIGKILL after ``grace``."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
