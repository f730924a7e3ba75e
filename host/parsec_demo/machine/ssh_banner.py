"""Waiting for a machine's SSH server to answer, and the error a target raises.

Apart from the SSH client (``ssh_target``, on paramiko), so that what only boots a machine or
describes one (the machine runners, LAVA's job writer, the command line) does not load it.
"""

from __future__ import annotations

import socket
import time

from ..errors import UserError


class TargetError(UserError):
    pass


#: How long wait_for_banner's successive attempts wait for the banner, in seconds.
BANNER_PATIENCE = (1.0, 1.0, 1.0, 2.0, 4.0, 8.0)


def wait_for_banner(host: str, port: int, timeout: float) -> None:
    """Wait until something on host:port speaks SSH.

    Behind QEMU's user networking a connection is accepted at once and only then forwarded to
    the guest: refused quickly if the guest has no listener yet, but held until the guest has
    its address, and then for QEMU's retry back-off (3 s). So the first attempts give up after
    a second and try afresh, and later ones wait longer (BANNER_PATIENCE: 1, 1, 1, 2, 4, then
    8 s): an attempt made before the guest had its address costs a second, and a slow but
    alive server (a busy guest under emulation) still gets the time it needs. One connection
    at a time: every one costs the guest an sshd process.
    """
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    hangs = 0
    while (now := time.monotonic()) < deadline:
        pause = 0.25
        patience = BANNER_PATIENCE[min(hangs, len(BANNER_PATIENCE) - 1)]
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.settimeout(max(0.1, min(patience, deadline - now)))
                banner = sock.recv(4)
                if banner == b"SSH-":
                    return
                last_error = (
                    f"not an SSH server (it said {banner!r})"
                    if banner
                    else "connection closed before the SSH banner"
                )
        except TimeoutError:
            last_error = f"connected, but no SSH banner within {patience:.0f} s"
            hangs += 1
            pause = 0.0  # that attempt was its own wait
        except OSError as exc:
            last_error = str(exc)
        time.sleep(pause)
    raise TargetError(f"no SSH server on {host}:{port} after {timeout:.0f} s ({last_error})")
