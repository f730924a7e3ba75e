"""What every machine runner does the same way, whatever the emulator: start (and undo a
half-done start), wait for the boot (a login prompt on the default console, then SSH
answering), explain a failed boot with the console's last lines and the logs; the
emulator's whole process group is started and stopped by ``parsec_demo_processes``."""

from __future__ import annotations

import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Self

from parsec_demo_processes import log_failure, tail

from ..errors import UserError
from .ports import PortLease
from .ssh_banner import TargetError, wait_for_banner


class BootError(UserError):
    pass


class Machine(ABC):
    """A machine the runner starts and stops; a context manager that stops it on the way out.

    A start that fails half-way (a boot error, SIGINT during the boot) stops whatever it had
    started, so no emulator, console reader or port lease outlives the error.
    """

    #: The emulator, as a boot failure names it; the kind of machine, as machine.json says it.
    emulator: ClassVar[str]
    kind: ClassVar[str]
    #: Where to look when the emulator's program is missing.
    program_hint: ClassVar[str]
    run_dir: Path
    process: subprocess.Popen[bytes] | None
    ssh_port: PortLease | None
    boot_timeout: float

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

    @abstractmethod
    def boot_console(self) -> Path:
        """The console the login prompt shows on."""

    @abstractmethod
    def logs(self) -> list[Path]:
        """The logs the machine has written, as a failure lists them."""

    @abstractmethod
    def emulator_log(self) -> Path:
        """What the emulator itself wrote (its standard output and error)."""

    @abstractmethod
    def console_logs(self) -> dict[str, Path]:
        """Each console's log, by the console's name (``default`` for the login console)."""

    @abstractmethod
    def rse_logs(self) -> tuple[Path | None, Path | None]:
        """The RSE's console log and its JSON events, where the machine has them."""

    @abstractmethod
    def login_key(self) -> Path | None:
        """The SSH key that logs in as root, if the machine has one."""

    @abstractmethod
    def open_console(self) -> socket.socket:
        """A connection to the login console (waiting until it can be made)."""

    def _wait_for_boot(self) -> None:
        assert self.process is not None and self.ssh_port is not None
        wait_for_boot(
            self.process,
            self.emulator,
            self.boot_console(),
            self.ssh_port.port,
            self.boot_timeout,
            self.logs,
            self.emulator_log(),
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def wait_for_boot(
    process: subprocess.Popen[bytes],
    name: str,
    console: Path,
    ssh_port: int,
    timeout: float,
    list_logs: Callable[[], Sequence[Path]],
    emulator_log: Path,
) -> None:
    """Until ``login:`` shows on ``console`` and SSH answers; if not, a BootError with the last
    console lines and the logs (``logtail``'s failure message). An emulator that exited is
    quoted in the headline: the last line of ``emulator_log`` (why QEMU refused a missing disk,
    say, when the console never saw a line).

    ``list_logs`` is asked at the failure, when every log the machine wrote exists.
    """

    def failed(reason: str) -> BootError:
        return BootError(log_failure(f"boot failed: {reason}", console, list_logs()))

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            said = tail(emulator_log, 1).strip()
            raise failed(
                f"{name} exited with status {process.returncode}" + (f": {said}" if said else "")
            )
        if console.exists() and b"login:" in console.read_bytes():
            break
        if time.monotonic() > deadline:
            raise failed(f"no login prompt within {timeout:.0f} s")
        time.sleep(0.25)
    try:
        wait_for_banner("127.0.0.1", ssh_port, max(5.0, deadline - time.monotonic()))
    except TargetError as exc:
        raise failed(str(exc)) from None
