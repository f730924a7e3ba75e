"""Listening on a Unix socket path the way every daemon of the project does.

A socket file left by a process that died is replaced; one that still answers belongs to a
running daemon, and taking it over would cut that daemon off, so that is an error. Anything
else at the path (a regular file or a directory given by mistake) is never removed.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path


def listen_unix(path: Path, owner: str, backlog: int, mode: int | None = None) -> socket.socket:
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise RuntimeError(f"{path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: its daemon is gone
        else:
            probe.close()
            raise RuntimeError(f"{path} is in use by another {owner}")
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    if mode is not None:
        os.chmod(path, mode)
    listener.listen(backlog)
    return listener
