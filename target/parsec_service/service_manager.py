"""Telling the service manager how a daemon is doing: systemd's notification protocol
(``sd_notify``), for units of ``Type=notify``.

systemd names a datagram socket in ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace); the daemon sends it newline-separated ``KEY=value`` states: ``READY=1`` once it
serves (the unit turns from "activating" to "active" only then, so whatever is ordered after
it, and ``systemctl start``, waits for the socket to answer), ``RELOADING=1`` with
``MONOTONIC_USEC`` while it reloads, then ``READY=1`` again, and ``STOPPING=1`` when it stops.
Without ``NOTIFY_SOCKET`` (not run by systemd, or by a unit of another type) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

READY = "READY=1"
STOPPING = "STOPPING=1"


def reloading() -> tuple[str, ...]:
    """The states of a reload beginning (systemd wants the monotonic clock with it)."""
    return ("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def notify(*states: str) -> bool:
    """Send ``states`` to the service manager; False when there is none, or it cannot be
    reached (logged: a daemon goes on serving either way)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        target = "\0" + address[1:]
    elif address.startswith("/"):
        target = address
    else:
        log.warning(
            "NOTIFY_SOCKET %r is not a Unix socket: the service manager is not told", address
        )
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(target)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("could not notify the service manager at %s: %s", address, exc)
        return False
    return True
