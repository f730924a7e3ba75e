"""One daemon per state directory.

A daemon that keeps its state in a directory (the RSE model's key store) holds an exclusive
``flock`` on the file ``.lock`` in it for as long as it runs, with its pid written there. A
second daemon given the same directory is refused at start, in one line naming the pid that
holds it, before it has touched anything: two models on one store would each take the other's
unfinished writes for a crash's leftovers, and each answer for keys the other destroyed. The
kernel drops the lock when the holder exits, however it exits, so a crash leaves no stale lock.

On a read-only directory the lock file is locked as it is (read-only, the pid not written);
where there is none, nothing is locked, and nothing needs to be: no daemon can change the
directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class DirectoryInUse(RuntimeError):
    pass


class DirectoryLock:
    """The lock on ``directory`` (which must exist), taken at once or refused."""

    def __init__(self, directory: Path, owner: str) -> None:
        self._fd: int | None = None
        path = directory / LOCK_NAME
        # Held read-only: an open file for writing would keep the file system from being
        # remounted read-only under the daemon, which it must survive.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
            return  # a read-only directory without a lock file: nobody can change it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DirectoryInUse(
                f"{directory} is in use by another {owner} (pid {holder}): give each its own"
            ) from None
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        try:
            writer = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                self.release()
                raise
            return  # read-only: locked, the pid not written
        try:
            os.write(writer, f"{os.getpid()}\n".encode())
        finally:
            os.close(writer)

    def release(self) -> None:
        """Give the directory up (also done by the process's exit); safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
