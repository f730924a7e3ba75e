"""A TLS server on this host (host mode): started in the background, awaited until it listens.

On a machine the layer's steps start the server (``parsec_demo_machine.start_server_command``);
here it is a process of this toolkit's (``parsec_demo_processes.spawn``), its command line
passed through ``wrap`` (into the demo's network namespace), ready when it prints
``SERVER_READY``, as the machine's step waits for.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from parsec_demo_machine import SERVER_READY
from parsec_demo_processes import failure_message, spawn, stop_group, wait_until

from ..services import ServiceError


class LocalServer:
    """A TLS server on this host, its output appended to ``log_path``."""

    def __init__(
        self, log_path: Path, cwd: Path, wrap: Callable[[Sequence[str]], list[str]] = list
    ) -> None:
        self.log_path = log_path
        self.cwd = cwd
        self.wrap = wrap
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, argv: Sequence[str], timeout: float = 20.0, interval: float = 0.02) -> None:
        """Start ``argv`` and wait until it prints ``SERVER_READY``, looking every ``interval``
        seconds. A server that exits first or is not ready within ``timeout`` is stopped, and a
        ServiceError shows its last lines and its log."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        process = self.process = spawn(self.wrap(argv), self.log_path, cwd=self.cwd)

        def output() -> str:
            return self.log_path.read_bytes()[offset:].decode(errors="replace")

        wait_until(
            lambda: SERVER_READY in output() or process.poll() is not None, timeout, interval
        )
        if SERVER_READY in output():
            return
        running = process.poll() is None
        self.stop()
        why = "exited during start-up" if not running else f"not ready after {timeout:g} s"
        raise ServiceError(
            failure_message(f"{Path(argv[0]).name} {why}", output(), [self.log_path])
        )

    def stop(self) -> None:
        stop_group(self.process, grace=5)
        self.process = None
