"""wait_for_banner against listeners that behave like QEMU's user-network forward: a connection
is accepted at once, and the guest's SSH server answers on it late, or never."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from parsec_demo.machine.ssh_banner import BANNER_PATIENCE, TargetError, wait_for_banner

BANNER = b"SSH-2.0-OpenSSH_9.2p1\r\n"


@contextmanager
def listener(answer: Callable[[int], float | None]) -> Iterator[tuple[int, list[int]]]:
    """A loopback listener; ``answer(n)`` says, for its n-th connection, after how many seconds
    to send the banner (None: never, the connection stays open and silent until closed)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    stop = threading.Event()

    def serve(conn: socket.socket, delay: float | None) -> None:
        with conn:
            if delay is None or stop.wait(delay):
                conn.recv(1)  # silent until the client gives up and closes
                return
            with suppress(OSError):  # the client may have given up already
                conn.sendall(BANNER)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(len(accepted))
            delay = answer(len(accepted))
            threading.Thread(target=serve, args=(conn, delay), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        server.close()


@pytest.mark.slow
def test_a_silent_early_connection_is_given_up_and_tried_again() -> None:
    # The first connection never answers (a guest without its address yet); the next does.
    with listener(lambda n: None if n == 1 else 0.0) as (port, accepted):
        wait_for_banner("127.0.0.1", port, 30)
    assert len(accepted) == 2


@pytest.mark.slow
def test_a_server_slower_than_the_first_attempts_patience_still_gets_its_time() -> None:
    # Every connection answers after 1.5 s: the first attempts (1 s) give up, the first to wait
    # longer (2 s) gets the banner; one connection at a time.
    with listener(lambda n: 1.5) as (port, accepted):
        wait_for_banner("127.0.0.1", port, 30)
    assert len(accepted) == BANNER_PATIENCE.index(2.0) + 1


@pytest.mark.slow
def test_a_server_that_accepts_but_never_answers_is_reported_as_such() -> None:
    expected = r"no SSH server on 127\.0\.0\.1:\d+ after 3 s \(connected, but no SSH banner"
    with listener(lambda n: None) as (port, _), pytest.raises(TargetError, match=expected):
        wait_for_banner("127.0.0.1", port, 3)


@pytest.mark.slow
def test_something_else_on_the_port_is_not_taken_for_ssh() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def http() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=http, daemon=True).start()
    try:
        with pytest.raises(TargetError, match=r"not an SSH server \(it said b'HTTP'\)"):
            wait_for_banner("127.0.0.1", server.getsockname()[1], 2)
    finally:
        server.close()


@pytest.mark.slow
def test_nothing_listening_is_reported_with_the_connection_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(TargetError, match=r"after 1 s \(.*[Cc]onnection refused"):
        wait_for_banner("127.0.0.1", port, 1)
