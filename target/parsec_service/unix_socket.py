"""Listening on a Unix socket path the way every daemon of the project does, and letting go.

A socket file left by a process that died is replaced; one that still answers belongs to a
running daemon, and taking it over would cut that daemon off, so that is an error. Anything
else at the path (a regular file or a directory given by mistake) is never removed.

On the way out a daemon removes its socket file only while the path still holds the very file
it bound (same device and inode): whatever took the path's place meanwhile (another daemon's
socket, a regular file) stays.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

#: A file's identity: its device and inode numbers.
FileIdentity = tuple[int, int]


class SocketPathError(RuntimeError):
    """The path cannot be listened on: a live daemon holds it, or it is not a socket."""


def listen_unix(path: Path, owner: str, backlog: int, mode: int | None = None) -> socket.socket:
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise SocketPathError(f"{path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: its daemon is gone
        else:
            raise SocketPathError(f"{path} is in use by another {owner}")
        finally:
            probe.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        if mode is not None:
            os.chmod(path, mode)
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener


def socket_file_identity(path: Path) -> FileIdentity:
    """The identity of the socket file at ``path``, to recognise it when removing it."""
    info = os.lstat(path)
    return info.st_dev, info.st_ino


def remove_socket_file(path: Path, identity: FileIdentity) -> bool:
    """Remove ``path`` if it is still the socket file ``identity`` names; True if removed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode) or (info.st_dev, info.st_ino) != identity:
        return False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True
