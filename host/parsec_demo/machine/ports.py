"""TCP ports for machines side by side: allocated race-free across processes.

A port is ours while we hold an exclusive ``flock`` on its lock file (in a directory every
runner on the machine shares) and nothing else listens on it. The lock dies with the process
that holds it, so a crashed runner frees its ports by itself.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
from pathlib import Path

from ..errors import UserError

LOCK_DIR = Path(os.environ.get("PARSEC_DEMO_PORT_LOCKS", "/tmp/parsec-demo-ports"))
PORT_RANGE = (20000, 40000)


class PortLease:
    """One allocated port; ``release()`` (or process exit) gives it back."""

    def __init__(self, port: int, lock_fd: int) -> None:
        self.port = port
        self._fd: int | None = lock_fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PortLease:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def port_free(port: int) -> bool:
    """Nothing listens on (or holds) 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate_port(attempts: int = 200) -> PortLease:
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random()
    for _ in range(attempts):
        port = rng.randrange(*PORT_RANGE)
        fd = os.open(LOCK_DIR / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if port_free(port):
            return PortLease(port, fd)
        os.close(fd)
    raise UserError(
        f"no free TCP port found in {PORT_RANGE} after {attempts} attempts: too many machines "
        "or services on this host"
    )
