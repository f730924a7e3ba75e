"""An SSH target with oeqa's interface, so the same test cases run against any machine.

``run(cmd, timeout=None) -> (status, output)`` as oeqa's OESSHTarget: the command runs as root
with ``PATH`` set, stdout and stderr come back merged and right-stripped, and ``timeout`` is
an inactivity timeout (no output for that long ends the command). ``copyTo``/``copyFrom`` move
files. Connecting waits for the machine's SSH server to answer (slirp accepts TCP before sshd
listens, so the SSH banner is awaited first), checks the host key when one is known, and says
clearly when the host key or the authentication is wrong.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from pathlib import Path

import paramiko

PATH_PREFIX = "export PATH=/usr/sbin:/sbin:/usr/bin:/bin; "
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


class TargetError(RuntimeError):
    pass


def wait_for_banner(host: str, port: int, timeout: float) -> None:
    """Wait until something on host:port speaks SSH."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.settimeout(3)
                if sock.recv(4) == b"SSH-":
                    return
                last_error = "connection closed before the SSH banner"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.5)
    raise TargetError(f"no SSH server on {host}:{port} after {timeout:.0f} s ({last_error})")


class SSHTarget:
    def __init__(
        self,
        host: str,
        port: int = 22,
        key_file: Path | None = None,
        host_key: str | None = None,
        user: str = "root",
    ) -> None:
        self.ip = host
        self.host = host
        self.port = port
        self.user = user
        self.key_file = key_file
        self.host_key = host_key
        self._client: paramiko.SSHClient | None = None

    # --- connection ---------------------------------------------------------------------------

    def connect(self, timeout: float = 120.0) -> SSHTarget:
        deadline = time.monotonic() + timeout
        while True:
            wait_for_banner(self.host, self.port, max(1.0, deadline - time.monotonic()))
            try:
                self._client = self._open()
                return self
            except (paramiko.BadHostKeyException, paramiko.AuthenticationException) as exc:
                raise TargetError(self._explain(exc)) from exc
            except (paramiko.SSHException, OSError) as exc:
                if time.monotonic() > deadline:
                    raise TargetError(f"SSH to {self.host}:{self.port} failed: {exc}") from exc
                time.sleep(0.5)

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

    # --- oeqa's target API --------------------------------------------------------------------

    def run(
        self, cmd: str, timeout: float | None = None, ignore_status: bool = True
    ) -> tuple[int, str]:
        """Run ``cmd``; ``timeout`` ends it after that many seconds without output."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            self.close()
            transport = self.client.get_transport()
        assert transport is not None
        channel = transport.open_session()
        channel.set_combine_stderr(True)
        channel.exec_command(PATH_PREFIX + cmd)
        output = bytearray()
        started = last_output = time.monotonic()
        killed = False
        while True:
            readable, _, _ = select.select([channel], [], [], 0.5)
            if readable:
                data = channel.recv(65536)
                if not data:
                    break
                output += data
                last_output = time.monotonic()
            elif channel.exit_status_ready() and not channel.recv_ready():
                break
            if timeout and time.monotonic() - last_output > timeout:
                channel.close()
                killed = True
                break
        text = output.decode(errors="replace").rstrip()
        if killed:
            text += (
                f"\nProcess killed - no output for {timeout} seconds. "
                f"Total running time: {time.monotonic() - started:.0f} seconds."
            )
            return 255, text.rstrip()
        status = channel.recv_exit_status()
        channel.close()
        return status, text.rstrip()

    def copyTo(self, localSrc: str | Path, remoteDst: str) -> None:
        with self.client.open_sftp() as sftp:
            sftp.put(str(localSrc), remoteDst)

    def copyFrom(self, remoteSrc: str, localDst: str | Path) -> None:
        with self.client.open_sftp() as sftp:
            sftp.get(remoteSrc, str(localDst))


def _b64(data: str) -> bytes:
    import base64

    return base64.b64decode(data)
