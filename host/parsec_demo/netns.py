"""A private network namespace for a demo run, so that its ssl_server can own port 4433.

ssl_server listens on 4433 and ssl_client1 connects there, as upstream's programs do. Each
run gets its own loopback in a network namespace held by a small process; the server and the
client enter it with ``nsenter``, while the Parsec service and the RSE model stay on Unix
sockets in the run directory. The holder exits when its standard input closes, so a run that
dies, even by SIGKILL, leaves no namespace behind.

Without the privilege to make a namespace (not root), the run uses the host's network and
needs port 4433 free.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from .machine.ports import port_free

__all__ = ["NetworkNamespace", "port_free"]


class NetworkNamespace:
    def __init__(self) -> None:
        self._holder: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter", "ip"))

    def __enter__(self) -> NetworkNamespace:
        if not self.available():
            return self
        holder = subprocess.Popen(
            [
                "unshare",
                "--net",
                "sh",
                "-c",
                "ip link set lo up && echo ready && exec cat >/dev/null",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != b"ready":
            holder.kill()
            holder.wait()
            return self  # no namespaces here (e.g. in a restricted container)
        self._holder = holder
        return self

    def __exit__(self, *_: object) -> None:
        if self._holder is not None:
            assert self._holder.stdin is not None
            self._holder.stdin.close()
            try:
                self._holder.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait()
            self._holder = None

    @property
    def isolated(self) -> bool:
        return self._holder is not None

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (or as it is, without one)."""
        if self._holder is None:
            return list(argv)
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--", *argv]
