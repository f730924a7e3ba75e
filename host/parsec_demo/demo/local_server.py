"""A TLS server on this host (host mode): started in the background, awaited until it listens.

On a machine the layer's steps start the server (``parsec_demo_machine.start_server_command``);
here it is a process of this toolkit's (``parsec_demo_processes.spawn``), its command line
passed through ``wrap`` (into the demo's network namespace), ready when it prints
``SERVER_READY``, as the machine's step waits for.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from parsec_demo_machine import SERVER_READY
from parsec_demo_processes import failure_message, spawn, stop_group

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
        self.process = spawn(self.wrap(argv), self.log_path, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while True:
            output = self.log_path.read_bytes()[offset:].decode(errors="replace")
            if SERVER_READY in output:
                return
            running = self.process.poll() is None
            if not running or time.monotonic() > deadline:
                self.stop()
                why = "exited during start-up" if not running else f"not ready after {timeout:g} s"
                headline = f"{Path(argv[0]).name} {why}"
                raise ServiceError(failure_message(headline, output, [self.log_path]))
            time.sleep(interval)

    def stop(self) -> None:
        stop_group(self.process, grace=5)
        self.process = None
