"""The Parsec listener's own paths: a request that is already whole when its connection is
accepted never enters the selector, one that arrives in pieces does, and both are answered the
same; the worker pool runs every submitted request, survives a bug in one, and lets the
submitted ones finish on shutdown."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import pytest

from parsec_service import contracts as pb
from parsec_service.auth import Peer
from parsec_service.constants import Opcode
from parsec_service.server import WorkerPool
from parsec_service.wire import HEADER, Header, encode_request
from support.running import RunningParsec

LIST_OPCODES = encode_request(
    Header(opcode=Opcode.LIST_OPCODES),
    pb.list_opcodes.Operation(provider_id=4).SerializeToString(),
    b"",
)


def exchange_in_pieces(parsec: RunningParsec, pieces: list[bytes]) -> bytes:
    """Send ``pieces`` 30 ms apart on one connection; the whole response."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(parsec.socket_path))
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.03)  # each piece its own read: the connection waits in the selector
        response = b""
        while (
            len(response) < HEADER.size
            or len(response) < HEADER.size + Header.decode(response[: HEADER.size]).body_len
        ):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    return response


def test_whole_and_piecewise_requests_get_the_same_answer(parsec: RunningParsec) -> None:
    whole = exchange_in_pieces(parsec, [LIST_OPCODES])
    assert Header.decode(whole[: HEADER.size]).status == 0 and len(whole) > HEADER.size
    cuts = (0, 10, HEADER.size, HEADER.size + 1, len(LIST_OPCODES))
    pieces = [LIST_OPCODES[start:end] for start, end in itertools.pairwise(cuts)]
    assert exchange_in_pieces(parsec, pieces) == whole
    deadline = time.monotonic() + 5
    while parsec.server.open_connections() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert parsec.server.open_connections() == 0
    assert not parsec.server._connections(), "no connection is left in the selector"


def test_a_request_whose_client_hung_up_while_it_waited_is_not_run(
    parsec: RunningParsec, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One peer's requests in flight are all held in their workers; its next request waits for
    a turn, and its client hangs up meanwhile: that request is never run, the others are
    answered, and the connection's place is given back."""
    per_peer = parsec.service.config.max_requests_in_flight_per_peer
    gate, started = threading.Event(), threading.Semaphore(0)
    runs: list[int] = []
    serve_request = parsec.service.serve_request

    def held(read: Callable[[int], bytes], peer: Peer) -> bytes:
        runs.append(peer.uid)
        started.release()
        assert gate.wait(10)
        return serve_request(read, peer)

    monkeypatch.setattr(parsec.service, "serve_request", held)
    held_clients = []
    for _ in range(per_peer):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(10)
        client.connect(str(parsec.socket_path))
        client.sendall(LIST_OPCODES)
        held_clients.append(client)
    for _ in range(per_peer):
        assert started.acquire(timeout=10)
    with caplog.at_level(logging.INFO, logger="parsec"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
            gone.connect(str(parsec.socket_path))
            gone.sendall(LIST_OPCODES)
            time.sleep(0.2)  # read by the loop, waiting for its turn
        gate.set()
        for client in held_clients:
            with client:
                reply = client.recv(65536)
                assert Header.decode(reply[: HEADER.size]).status == 0
        deadline = time.monotonic() + 5
        while "dropped" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert f"request of uid {os.getuid()} dropped: its client hung up" in caplog.text
    assert len(runs) == per_peer, "the hung-up client's request ran"
    deadline = time.monotonic() + 5
    while parsec.server.open_connections() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert parsec.server.open_connections() == 0


def test_the_worker_pool_runs_everything_and_survives_a_bug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> None:
        if item == 3:
            raise RuntimeError("a bug in one request")
        time.sleep(0.001)
        with lock:
            done.append(item)

    pool: WorkerPool[int] = WorkerPool(2, work, "test", lambda: 2)
    pool.start()
    with caplog.at_level(logging.ERROR, logger="parsec"):
        for item in range(50):
            pool.submit(item % 3, item)
        pool.shutdown()  # returns once every submitted item ran
    assert sorted(done) == [i for i in range(50) if i != 3]
    assert "internal error in a worker" in caplog.text
    assert not any(t.name.startswith("test_") for t in threading.enumerate())


def test_the_worker_pool_shares_itself_between_peers() -> None:
    """A peer with 40 slow items holds at most its share of the workers; another peer's item,
    submitted after them, runs at the next turn, not after the flood."""
    lock = threading.Lock()
    running: dict[str, int] = {"flood": 0, "other": 0}
    most = {"flood": 0}
    order: list[str] = []
    release = threading.Event()

    def work(item: tuple[str, int]) -> None:
        peer, _ = item
        with lock:
            running[peer] += 1
            most["flood"] = max(most["flood"], running["flood"])
        if peer == "flood":
            release.wait(timeout=0.02)
        with lock:
            running[peer] -= 1
            order.append(peer)

    pool: WorkerPool[tuple[str, int]] = WorkerPool(4, work, "fair", lambda: 2)
    pool.start()
    for n in range(40):
        pool.submit("flood", ("flood", n))
    time.sleep(0.01)
    pool.submit("other", ("other", 0))
    pool.shutdown()
    assert len(order) == 41
    assert most["flood"] == 2, "never more than its share at once"
    assert order.index("other") <= 4, order[:8]
