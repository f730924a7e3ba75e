"""An SSH target with oeqa's interface, so the same test cases run against any machine.

It keeps the contract of poky's ``OESSHTarget`` (scarthgap, ``meta/lib/oeqa/core/target/ssh.py``)
argument for argument, over paramiko instead of the ``ssh``/``scp`` programs:

``run(command, timeout=None, ignore_status=True, raw=False) -> (status, output)``
    ``command`` runs through the login shell as root with ``PATH`` set to
    ``/usr/sbin:/sbin:/usr/bin:/bin``; its standard input is at end of file. stdout and stderr
    come back merged, decoded as UTF-8 with undecodable bytes dropped, trailing whitespace
    stripped (leading whitespace kept). ``timeout`` is an inactivity limit: a positive number
    ends the command after that many seconds without output, ``None`` uses the target's
    ``timeout`` (300 s unless given), ``0`` waits for as long as the command runs. The command
    counts as finished when its output is closed, so a background child that still holds the
    output keeps ``run`` waiting, as it keeps ``ssh`` waiting. A command ended by the limit,
    killed by a signal, or that could not be started because the connection failed, has status
    255 (ssh's own); the output is what arrived before (scarthgap's note "Process killed ..."
    never reaches the caller: poky builds it and then overwrites it). With
    ``ignore_status=False`` a non-zero status raises ``AssertionError("Command '<command>'
    returned non-zero exit status <status>:\\n<output>")``. ``raw=True`` returns stdout as
    bytes, unstripped, and lets stderr through to this process's stderr.
``copyTo(localSrc, remoteDst) -> (status, output)``
    A local symbolic link is recreated on the target with ``cd <dir>; ln -s <link> <name>``
    (through ``run``, status not checked). Anything else is copied like ``scp -r``: into
    ``remoteDst/<name>`` when ``remoteDst`` is a directory, directories recursively, a new file
    with the source's permission bits less the target's umask, an existing file keeping its
    own; a failure raises ``AssertionError``.
``copyFrom(remoteSrc, localDst, warn_on_failure=False) -> (status, output)``
    The same copy the other way; a failure raises, unless ``warn_on_failure``, which logs a
    warning and returns the status.
``copyDirTo``, ``deleteFiles``, ``deleteDir``, ``deleteDirStructure``
    poky's helpers: ``mkdir -p`` for each sub-directory (``remoteDst`` itself is not created)
    and ``copyTo`` for each file; ``rm``/``rmdir`` through ``run``, statuses not checked. As in
    poky, their paths reach the shell unquoted.

``rse_log``
    The RSE's console log on this host (a path string), or None: what the layer's testimage
    controllers also tell the cases, which read the part written during a handshake.

Connecting waits for the machine's SSH server to answer (slirp accepts TCP before sshd
listens, so the SSH banner is awaited first), checks the host key when one is known, and says
clearly when the host key or the authentication is wrong. A connection that drops is opened
again by the next call, once, as each ``ssh`` invocation connects once.
"""

from __future__ import annotations

import base64
import logging
import os
import posixpath
import select
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, overload

import paramiko

from .ssh_banner import TargetError, wait_for_banner

PATH_PREFIX = "export PATH=/usr/sbin:/sbin:/usr/bin:/bin; "
#: OESSHTarget's default for ``timeout``: the limit ``run(..., timeout=None)`` applies.
DEFAULT_TIMEOUT = 300.0
#: The status ``ssh`` exits with when it cannot run the command to its end.
SSH_FAILED = 255
#: The status a copy that failed on a file (not on the connection) ends with, as scp's.
COPY_FAILED = 1
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


class _CopyFailed(Exception):
    """A copy that failed with ``status`` and what scp would have printed."""

    def __init__(self, status: int, output: str) -> None:
        super().__init__(output)
        self.status = status
        self.output = output


class SSHTarget:
    def __init__(
        self,
        host: str,
        port: int = 22,
        key_file: Path | None = None,
        host_key: str | None = None,
        user: str = "root",
        timeout: float = DEFAULT_TIMEOUT,
        rse_log: Path | None = None,
    ) -> None:
        self.ip = host
        #: The RSE's console log on this host, as the cases read it (a path string, or None).
        self.rse_log = str(rse_log) if rse_log is not None else None
        self.host = host
        self.port = port
        self.user = user
        self.key_file = key_file
        self.host_key = host_key
        self.timeout = timeout
        self.logger = logging.getLogger(__name__)
        self._client: paramiko.SSHClient | None = None
        self._umask: int | None = None

    # --- connection ---------------------------------------------------------------------------

    def connect(self, timeout: float = 120.0) -> SSHTarget:
        """Log in, retrying until ``timeout``: a machine that has booted answers the first
        attempt; after a failed one, wait_for_banner waits for the server before the next."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._client = self._open()
                return self
            except (paramiko.BadHostKeyException, paramiko.AuthenticationException) as exc:
                raise TargetError(self._explain(exc)) from exc
            except (paramiko.SSHException, OSError) as exc:
                if time.monotonic() > deadline:
                    raise TargetError(f"SSH to {self.host}:{self.port} failed: {exc}") from exc
            time.sleep(0.5)
            wait_for_banner(self.host, self.port, max(1.0, deadline - time.monotonic()))

    def _open(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if self.host_key:
            key_type, key_data = self.host_key.split()[:2]
            name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            client.get_host_keys().add(
                name, key_type, paramiko.PKey.from_type_string(key_type, _b64(key_data))
            )
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        pkey = (
            paramiko.Ed25519Key.from_private_key_file(str(self.key_file)) if self.key_file else None
        )
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=pkey,
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
                banner_timeout=30,
                auth_timeout=30,
            )
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        return client

    def _explain(self, exc: Exception) -> str:
        if isinstance(exc, paramiko.BadHostKeyException):
            return (
                f"the machine at {self.host}:{self.port} presented host key "
                f"{exc.key.get_name()} {exc.key.get_base64()[:16]}..., not the image's "
                f"{exc.expected_key.get_base64()[:16]}...: wrong machine or image"
            )
        return f"SSH authentication as {self.user} with {self.key_file} was refused: {exc}"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._umask = None

    def __enter__(self) -> SSHTarget:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            self.connect()
        assert self._client is not None
        return self._client

    def _transport(self) -> paramiko.Transport:
        """The live connection, opened again (one attempt) when it dropped."""
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            self.close()
            self._client = self._open()
            transport = self._client.get_transport()
            if transport is None:
                raise paramiko.SSHException("no transport after connecting")
        return transport

    def _connection_failure(self, exc: Exception) -> str:
        if isinstance(exc, (paramiko.BadHostKeyException, paramiko.AuthenticationException)):
            return f"ssh: {self._explain(exc)}"
        return f"ssh: {self.host} port {self.port}: {str(exc) or type(exc).__name__}"

    # --- oeqa's target API: run ---------------------------------------------------------------

    @overload
    def run(
        self,
        command: str,
        timeout: float | None = None,
        ignore_status: bool = True,
        raw: Literal[False] = False,
    ) -> tuple[int, str]: ...

    @overload
    def run(
        self, command: str, timeout: float | None, ignore_status: bool, raw: Literal[True]
    ) -> tuple[int, bytes]: ...

    @overload
    def run(
        self,
        command: str,
        timeout: float | None = None,
        ignore_status: bool = True,
        *,
        raw: Literal[True],
    ) -> tuple[int, bytes]: ...

    def run(
        self,
        command: str,
        timeout: float | None = None,
        ignore_status: bool = True,
        raw: bool = False,
    ) -> tuple[int, str] | tuple[int, bytes]:
        """Run ``command`` on the target; see the module's description for every rule."""
        if timeout:
            limit: float | None = timeout
        elif timeout == 0:
            limit = None
        else:
            limit = self.timeout or None
        started = time.monotonic()
        status, data = self._execute(PATH_PREFIX + command, limit, raw)
        text = data.decode("utf-8", errors="ignore").rstrip()
        shown = data if raw else text
        self.logger.debug(
            "[%s] returned %d after %.2f s:\n%s", command, status, time.monotonic() - started, shown
        )
        if status and not ignore_status:
            raise AssertionError(
                f"Command '{command}' returned non-zero exit status {status}:\n{shown!s}"
            )
        return (status, data) if raw else (status, text)

    def _execute(self, command: str, limit: float | None, raw: bool) -> tuple[int, bytes]:
        try:
            channel = self._transport().open_session(timeout=30)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            message = self._connection_failure(exc)
            if raw:
                print(message, file=sys.stderr)
                return SSH_FAILED, b""
            return SSH_FAILED, message.encode()
        output = bytearray()
        last_output = time.monotonic()

        def idle() -> bool:
            return limit is not None and time.monotonic() - last_output >= limit

        def drain() -> None:
            nonlocal last_output
            while raw and channel.recv_stderr_ready():
                sys.stderr.buffer.write(channel.recv_stderr(65536))
                sys.stderr.flush()
                last_output = time.monotonic()
            while channel.recv_ready():
                output.extend(channel.recv(65536))
                last_output = time.monotonic()

        try:
            channel.set_combine_stderr(not raw)
            channel.exec_command(command)
            channel.shutdown_write()  # stdin at end of file, as from /dev/null
            # Until the output is closed (end of file, or the channel gone) ...
            while not (channel.eof_received or channel.closed) or channel.recv_ready():
                if idle():
                    return self._killed(limit, output)
                wait = 0.2 if limit is None else last_output + limit - time.monotonic()
                select.select([channel], [], [], max(0.0, min(0.2, wait)))
                drain()
            # ... then the exit status, within the same limit.
            while not (channel.exit_status_ready() or channel.closed):
                if idle():
                    return self._killed(limit, output)
                time.sleep(0.02)
                drain()
            drain()
            status = channel.recv_exit_status()
            # No exit status (killed by a signal, or the connection closed): ssh says 255.
            return (status if status >= 0 else SSH_FAILED), bytes(output)
        finally:
            channel.close()

    def _killed(self, limit: float | None, output: bytearray) -> tuple[int, bytes]:
        self.logger.debug("Process killed - no output for %s seconds.", limit)
        return SSH_FAILED, bytes(output)

    # --- oeqa's target API: copies ------------------------------------------------------------

    def copyTo(self, localSrc: str | Path, remoteDst: str) -> tuple[int, str]:
        local = os.fspath(localSrc)
        if os.path.islink(local):
            link = os.readlink(local)
            directory, name = posixpath.split(remoteDst)
            return self.run(f"cd {directory}; ln -s {link} {name}")
        return self._copy(
            f"copy {local} to {self.user}@{self.host}:{remoteDst}",
            lambda sftp: self._put(sftp, local, remoteDst),
            ignore_status=False,
        )

    def copyFrom(
        self, remoteSrc: str, localDst: str | Path, warn_on_failure: bool = False
    ) -> tuple[int, str]:
        local = os.fspath(localDst)
        status, output = self._copy(
            f"copy {self.user}@{self.host}:{remoteSrc} to {local}",
            lambda sftp: self._get(sftp, remoteSrc, local),
            ignore_status=warn_on_failure,
        )
        if warn_on_failure and status:
            self.logger.warning("Copy returned non-zero exit status %d:\n%s", status, output)
        return status, output

    def copyDirTo(self, localSrc: str | Path, remoteDst: str) -> None:
        local = os.fspath(localSrc)
        for root, dirs, files in os.walk(local):
            relative = os.path.relpath(root, local)
            base = remoteDst if relative == "." else posixpath.join(remoteDst, relative)
            for name in dirs:
                self.run(f"mkdir -p {posixpath.join(base, name)}")
            for name in files:
                self.copyTo(os.path.join(root, name), posixpath.join(base, name))

    def deleteFiles(self, remotePath: str, files: str | list[str]) -> None:
        names = files if isinstance(files, list) else [files]
        self.run(" ".join(["rm", *(posixpath.join(remotePath, name) for name in names)]))

    def deleteDir(self, remotePath: str) -> None:
        self.run(f"rmdir {remotePath}")

    def deleteDirStructure(self, localPath: str | Path, remotePath: str) -> None:
        """Remove from ``remotePath`` the files of the local tree ``localPath``, then each of
        its directories that is left empty, deepest first (``remotePath`` itself stays)."""
        local = os.fspath(localPath)
        for root, dirs, files in os.walk(local, topdown=False):
            relative = os.path.relpath(root, local)
            base = remotePath if relative == "." else posixpath.join(remotePath, relative)
            if files:
                self.deleteFiles(base, files)
            for name in dirs:
                self.deleteDir(posixpath.join(base, name))

    # --- copies over SFTP, with scp -r's rules ------------------------------------------------

    def _copy(
        self, description: str, action: Callable[[paramiko.SFTPClient], None], ignore_status: bool
    ) -> tuple[int, str]:
        started = time.monotonic()
        try:
            client = paramiko.SFTPClient.from_transport(self._transport())
            if client is None:
                raise paramiko.SSHException("the target refused the SFTP subsystem")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            status, output = SSH_FAILED, self._connection_failure(exc)
        else:
            try:
                action(client)
                status, output = 0, ""
            except _CopyFailed as exc:
                status, output = exc.status, exc.output
            except (paramiko.SSHException, EOFError) as exc:
                status, output = SSH_FAILED, self._connection_failure(exc)
            finally:
                client.close()
        self.logger.debug(
            "[%s] returned %d after %.2f s", description, status, time.monotonic() - started
        )
        if status and not ignore_status:
            raise AssertionError(
                f"Command '{description}' returned non-zero exit status {status}:\n{output}"
            )
        return status, output

    def _remote_umask(self) -> int:
        if self._umask is None:
            status, output = self.run("umask", timeout=60)
            try:
                self._umask = int(output.strip(), 8) if status == 0 else None
            except ValueError:
                self._umask = None
            if self._umask is None:
                raise _CopyFailed(SSH_FAILED, f"cannot read the target's umask: {output}")
        return self._umask

    def _put(self, sftp: paramiko.SFTPClient, local: str, remote: str) -> None:
        try:
            source = os.stat(local)
        except OSError as exc:
            raise _CopyFailed(COPY_FAILED, f"{local}: {exc.strerror}") from None
        if _remote_mode(sftp, remote, stat.S_ISDIR):
            remote = posixpath.join(remote, os.path.basename(local.rstrip("/")))
        if stat.S_ISDIR(source.st_mode):
            self._put_tree(sftp, local, remote, source.st_mode)
        elif stat.S_ISREG(source.st_mode):
            self._put_file(sftp, local, remote, source.st_mode)
        else:
            raise _CopyFailed(COPY_FAILED, f"{local}: not a regular file")

    def _put_file(self, sftp: paramiko.SFTPClient, local: str, remote: str, mode: int) -> None:
        existed = _remote_mode(sftp, remote, lambda _: True)
        try:
            sftp.put(local, remote, confirm=True)
            if not existed:
                sftp.chmod(remote, stat.S_IMODE(mode) & 0o777 & ~self._remote_umask())
        except OSError as exc:
            raise _CopyFailed(COPY_FAILED, f"{remote}: {exc.strerror or exc}") from None

    def _put_tree(self, sftp: paramiko.SFTPClient, local: str, remote: str, mode: int) -> None:
        if not _remote_mode(sftp, remote, stat.S_ISDIR):
            try:
                sftp.mkdir(remote, stat.S_IMODE(mode) & 0o777)
            except OSError as exc:
                raise _CopyFailed(COPY_FAILED, f"{remote}: {exc.strerror or exc}") from None
        for name in sorted(os.listdir(local)):
            path = os.path.join(local, name)
            try:
                entry = os.stat(path)  # scp follows links inside a tree
            except OSError as exc:
                raise _CopyFailed(COPY_FAILED, f"{path}: {exc.strerror}") from None
            if stat.S_ISDIR(entry.st_mode):
                self._put_tree(sftp, path, posixpath.join(remote, name), entry.st_mode)
            elif stat.S_ISREG(entry.st_mode):
                self._put_file(sftp, path, posixpath.join(remote, name), entry.st_mode)

    def _get(self, sftp: paramiko.SFTPClient, remote: str, local: str) -> None:
        try:
            mode = sftp.stat(remote).st_mode or 0
        except OSError as exc:
            raise _CopyFailed(COPY_FAILED, f"{remote}: {exc.strerror or exc}") from None
        if os.path.isdir(local):
            local = os.path.join(local, posixpath.basename(remote.rstrip("/")))
        if stat.S_ISDIR(mode):
            self._get_tree(sftp, remote, local, mode)
        elif stat.S_ISREG(mode):
            self._get_file(sftp, remote, local, mode)
        else:
            raise _CopyFailed(COPY_FAILED, f"{remote}: not a regular file")

    def _get_file(self, sftp: paramiko.SFTPClient, remote: str, local: str, mode: int) -> None:
        try:
            # A new file gets the remote permission bits (writable by its owner) less this
            # process's umask; an existing one keeps its own.
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, (mode & 0o777) | 0o200)
        except OSError as exc:
            raise _CopyFailed(COPY_FAILED, f"{local}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as out:
            try:
                sftp.getfo(remote, out)
            except OSError as exc:
                raise _CopyFailed(COPY_FAILED, f"{remote}: {exc.strerror or exc}") from None

    def _get_tree(self, sftp: paramiko.SFTPClient, remote: str, local: str, mode: int) -> None:
        try:
            if not os.path.isdir(local):
                os.mkdir(local, (mode & 0o777) | 0o700)
            entries = sftp.listdir_attr(remote)
        except OSError as exc:
            raise _CopyFailed(COPY_FAILED, f"{exc.filename or remote}: {exc.strerror}") from None
        for entry in sorted(entries, key=lambda e: e.filename):
            path = posixpath.join(remote, entry.filename)
            entry_mode = entry.st_mode or 0
            if stat.S_ISLNK(entry_mode):  # followed, as scp does
                try:
                    entry_mode = sftp.stat(path).st_mode or 0
                except OSError:
                    continue
            if stat.S_ISDIR(entry_mode):
                self._get_tree(sftp, path, os.path.join(local, entry.filename), entry_mode)
            elif stat.S_ISREG(entry_mode):
                self._get_file(sftp, path, os.path.join(local, entry.filename), entry_mode)


def _remote_mode(sftp: paramiko.SFTPClient, path: str, test: Callable[[int], bool]) -> bool:
    """Whether ``path`` exists on the target (following links) and its mode passes ``test``."""
    try:
        mode = sftp.stat(path).st_mode
    except OSError:
        return False
    return mode is not None and test(mode)


def _b64(data: str) -> bytes:
    return base64.b64decode(data)
