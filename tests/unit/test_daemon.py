"""The daemon skeleton both servers run on (``parsec_service.daemon``), each of its rules on a
small echo daemon over a real socket: the stop (from another thread, from SIGTERM or SIGINT),
SIGHUP, wake-ups, the wait for in-flight work, the socket file (removed at the stop, a stale
one replaced, a live one refused, a regular file or someone else's socket never removed), the
cleanup after an error, and the connection limits. Last, the Parsec service's use of it."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from parsec_demo.services import parsec_config_text
from parsec_service import client as client_module
from parsec_service import server as server_module
from parsec_service.client import ParsecClient
from parsec_service.daemon import STOP_POLL_S, ConnectionLimits, Refusal, UnixDaemon
from parsec_service.unix_socket import SocketPathError
from support.running import RunningParsec

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class EchoDaemon(UnixDaemon):
    """Answers each connection's first message with the same bytes, then closes it (an empty
    message, as from the probe of a second daemon on the path, gets nothing)."""

    def __init__(self, path: Path, timeout: float | None = None) -> None:
        super().__init__(path, "echo daemon", 8)
        self.timeout = timeout
        self.started = threading.Event()
        self.turns = 0  # after_wait calls
        self.reloads: list[str] = []  # the thread each reload ran in
        self.busy = False  # while stopping: not idle
        self.stopped = 0
        self.sighup_at_start: SignalHandler = None

    def on_start(self) -> None:
        self.sighup_at_start = signal.getsignal(signal.SIGHUP)
        self.started.set()

    def on_accept(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, sock)

    def on_ready(self, data: Any, events: int) -> None:
        sock: socket.socket = data
        message = sock.recv(4096)
        if message == b"fail\n":
            raise RuntimeError("a hook failed")
        self.selector.unregister(sock)
        sock.setblocking(True)
        with sock, contextlib.suppress(OSError):  # a peer gone, or a probe: nothing to answer
            sock.sendall(message)

    def next_timeout(self) -> float | None:
        return self.timeout

    def after_wait(self) -> None:
        self.turns += 1

    def on_reload(self) -> None:
        self.reloads.append(threading.current_thread().name)

    def idle(self) -> bool:
        return not self.busy

    def on_stop(self) -> None:
        self.stopped += 1


class ReloadingEcho(EchoDaemon):
    RELOADS = True


def echo(path: Path, message: bytes = b"ping\n") -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(message)
        return sock.recv(4096)


def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.005)


def refused(path: Path) -> bool:
    try:
        echo(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    return False


@pytest.fixture
def in_thread(tmp_path: Path) -> Iterator[Callable[..., tuple[EchoDaemon, threading.Thread]]]:
    """Start an echo daemon's loop in a thread of its own; stopped at the end if still running."""
    running: list[tuple[EchoDaemon, threading.Thread]] = []

    def start(daemon: EchoDaemon | None = None) -> tuple[EchoDaemon, threading.Thread]:
        daemon = daemon or EchoDaemon(tmp_path / "echo.sock")
        thread = threading.Thread(target=daemon.serve_forever, name="loop", daemon=True)
        thread.start()
        assert daemon.started.wait(5)
        running.append((daemon, thread))
        return daemon, thread

    yield start
    for daemon, thread in running:
        if thread.is_alive():
            daemon.busy = False
            daemon.request_stop()
            thread.join(5)


# --- stopping ---------------------------------------------------------------------------------


def test_a_stop_from_another_thread_ends_the_loop_and_cleans_up(
    in_thread: Callable[..., tuple[EchoDaemon, threading.Thread]], tmp_path: Path
) -> None:
    daemon, thread = in_thread()
    path = tmp_path / "echo.sock"
    assert echo(path) == b"ping\n"
    daemon.request_stop()
    thread.join(5)
    assert not thread.is_alive()
    assert not path.exists(), "the socket file is removed"
    assert refused(path)
    assert daemon.stopped == 1
    # The wake pipe is closed, and a late wake-up writes into no one's descriptor, even one
    # that reuses its number.
    read_end, write_end = os.pipe()
    try:
        daemon.wake()
        daemon.request_stop()
        assert select.select([read_end], [], [], 0.05)[0] == []
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_daemon_and_the_previous_handler_comes_back(
    tmp_path: Path, number: signal.Signals
) -> None:
    received: list[int] = []

    def before(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(number, before)
    try:
        daemon = EchoDaemon(tmp_path / "echo.sock")

        def send_signal() -> None:
            assert daemon.started.wait(5)
            assert echo(tmp_path / "echo.sock") == b"ping\n"
            os.kill(os.getpid(), number)

        sender = threading.Thread(target=send_signal)
        sender.start()
        daemon.serve_until_signalled()  # here, in the main thread, until the signal
        sender.join(5)
        assert not (tmp_path / "echo.sock").exists()
        assert daemon.stopped == 1
        assert signal.getsignal(number) is before
        assert received == [], "the daemon's handler took the signal"
    finally:
        signal.signal(number, previous)


def test_sighup_reloads_in_the_loop_a_daemon_that_reloads(tmp_path: Path) -> None:
    daemon = ReloadingEcho(tmp_path / "echo.sock")

    def signals() -> None:
        assert daemon.started.wait(5)
        os.kill(os.getpid(), signal.SIGHUP)
        until(lambda: len(daemon.reloads) == 1)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=signals, name="sender")
    sender.start()
    daemon.serve_until_signalled()
    sender.join(5)
    assert daemon.reloads == [threading.current_thread().name], "once, in the loop's thread"


def test_a_daemon_that_does_not_reload_leaves_sighup_alone(tmp_path: Path) -> None:
    def before(_signum: int, _frame: FrameType | None) -> None:
        pass

    previous = signal.signal(signal.SIGHUP, before)
    try:
        daemon = EchoDaemon(tmp_path / "echo.sock")
        threading.Timer(0.2, daemon.request_stop).start()
        daemon.serve_until_signalled()
        assert daemon.sighup_at_start is before
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_stop_closes_the_listener_at_once_and_waits_until_idle(
    in_thread: Callable[..., tuple[EchoDaemon, threading.Thread]], tmp_path: Path
) -> None:
    daemon, thread = in_thread()
    daemon.busy = True
    daemon.request_stop()
    until(lambda: not (tmp_path / "echo.sock").exists())
    assert refused(tmp_path / "echo.sock"), "nothing more is accepted"
    time.sleep(5 * STOP_POLL_S)
    assert thread.is_alive() and daemon.stopped == 0, "in-flight work goes on"
    daemon.busy = False  # no wake-up: the loop looks again by itself
    thread.join(1)
    assert not thread.is_alive() and daemon.stopped == 1


def test_an_error_in_a_hook_still_cleans_up(
    in_thread: Callable[..., tuple[EchoDaemon, threading.Thread]], tmp_path: Path
) -> None:
    daemon, thread = in_thread()
    failures: list[type[BaseException]] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_type)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(tmp_path / "echo.sock"))
            sock.sendall(b"fail\n")  # on_ready raises: the loop ends with the error
            thread.join(5)
    finally:
        threading.excepthook = previous_hook
    assert not thread.is_alive()
    assert failures == [RuntimeError]
    assert not (tmp_path / "echo.sock").exists()
    assert daemon.stopped == 1


# --- waking -----------------------------------------------------------------------------------


def test_wake_ups_from_other_threads_each_bring_a_turn_of_the_loop(
    in_thread: Callable[..., tuple[EchoDaemon, threading.Thread]],
) -> None:
    daemon, _ = in_thread()
    time.sleep(0.1)
    turns = daemon.turns
    time.sleep(0.1)
    assert daemon.turns == turns, "without a timeout, the loop waits"
    for n in range(1, 4):
        threading.Thread(target=daemon.wake).start()
        until(lambda n=n: daemon.turns >= turns + n)
    daemon.request_reload()
    until(lambda: daemon.reloads == ["loop"])


def test_wake_never_blocks_even_with_the_pipe_full(tmp_path: Path) -> None:
    daemon = EchoDaemon(tmp_path / "echo.sock")
    started = time.monotonic()
    for _ in range(100_000):  # far more than a pipe holds, with nobody reading
        daemon.wake()
    assert time.monotonic() - started < 5
    thread = threading.Thread(target=daemon.serve_forever, daemon=True)
    thread.start()
    assert echo(tmp_path / "echo.sock") == b"ping\n"
    daemon.request_stop()
    thread.join(5)
    assert not thread.is_alive()


def test_the_loop_wakes_by_itself_after_next_timeout(
    in_thread: Callable[..., tuple[EchoDaemon, threading.Thread]], tmp_path: Path
) -> None:
    daemon, _ = in_thread(EchoDaemon(tmp_path / "echo.sock", timeout=0.01))
    turns = daemon.turns
    until(lambda: daemon.turns >= turns + 10, timeout=2)


# --- the socket file --------------------------------------------------------------------------


def test_a_stale_socket_file_is_replaced(
    in_thread: Callable[..., tuple[EchoDaemon, threading.Thread]], tmp_path: Path
) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "echo.sock"))
    stale.close()  # the file stays and nobody listens: what a killed daemon leaves
    in_thread()
    assert echo(tmp_path / "echo.sock") == b"ping\n"


def test_a_live_socket_is_refused_and_its_daemon_goes_on(
    in_thread: Callable[..., tuple[EchoDaemon, threading.Thread]], tmp_path: Path
) -> None:
    in_thread()
    with pytest.raises(SocketPathError, match="is in use by another echo daemon"):
        EchoDaemon(tmp_path / "echo.sock")
    assert echo(tmp_path / "echo.sock") == b"ping\n"


def test_a_regular_file_at_the_path_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    path.write_text("precious")
    with pytest.raises(SocketPathError, match="exists and is not a socket"):
        EchoDaemon(path)
    assert path.read_text() == "precious"


def test_at_the_stop_only_the_daemons_own_socket_file_is_removed(
    in_thread: Callable[..., tuple[EchoDaemon, threading.Thread]], tmp_path: Path
) -> None:
    path = tmp_path / "echo.sock"
    first, first_thread = in_thread()
    path.unlink()
    path.write_text("put here while the daemon ran")
    first.request_stop()
    first_thread.join(5)
    assert path.read_text() == "put here while the daemon ran"

    path.unlink()
    second, second_thread = in_thread()
    path.unlink()
    _other = in_thread()  # another daemon's socket at the path now
    second.request_stop()
    second_thread.join(5)
    assert echo(path) == b"ping\n", "the other daemon's socket file stays"


# --- connection limits ------------------------------------------------------------------------


def test_connection_limits_count_in_all_and_per_peer() -> None:
    limits = ConnectionLimits()
    assert [limits.admit("a", 3, 2), limits.admit("a", 3, 2)] == [None, None]
    assert limits.admit("a", 3, 2) is Refusal.PEER, "a's share is taken"
    assert limits.admit("b", 3, 2) is None
    assert limits.admit("c", 3, 2) is Refusal.ALL
    assert limits.open == 3, "a refusal counts nothing"
    limits.release("a")
    assert limits.admit("c", 3, 2) is None
    assert limits.admit("c", 4) is None, "a new limit applies at once; None: no per-peer limit"
    for peer in ("a", "b", "c", "c"):
        limits.release(peer)
    assert limits.open == 0
    assert limits.admit("a", 1, 1) is None


def test_the_last_places_are_kept_for_peers_that_hold_few() -> None:
    limits = ConnectionLimits()
    for peer in ("a", "b"):
        for _ in range(3):
            assert limits.admit(peer, 10, 8, reserve=4, guaranteed=2) is None
    assert limits.admit("a", 10, 8, reserve=4, guaranteed=2) is Refusal.RESERVED
    for _ in range(2):
        assert limits.admit("c", 10, 8, reserve=4, guaranteed=2) is None, "a newcomer's place"
    assert limits.admit("c", 10, 8, reserve=4, guaranteed=2) is Refusal.RESERVED
    assert limits.admit("d", 10, 8, reserve=4, guaranteed=2) is None
    assert limits.admit("e", 10, 8, reserve=4, guaranteed=2) is None
    assert limits.admit("f", 10, 8, reserve=4, guaranteed=2) is Refusal.ALL


def test_connection_limits_hold_under_threads() -> None:
    limits = ConnectionLimits()
    admitted: list[Refusal | None] = []

    def admit_many() -> None:
        for _ in range(1000):
            admitted.append(limits.admit(None, 1500))

    threads = [threading.Thread(target=admit_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(None) == 1500 == limits.open


# --- the Parsec service on the skeleton ---------------------------------------------------------


@pytest.mark.slow
def test_a_response_the_loop_finishes_sending_leaves_the_service_sound(
    parsec_factory: Callable[..., RunningParsec], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response larger than the socket takes goes back to the loop, which sends the rest and
    then forgets the connection: the next client, which may get the same descriptor number, is
    served, and the counts of open connections stay right."""
    # A megabyte of random bytes is a response larger than the socket takes.
    parsec = parsec_factory(config_text=parsec_config_text(extra_core="max_random_bytes = 1000000"))
    real_recv_exact = client_module._recv_exact
    reads: list[int] = []

    def read_late(sock: socket.socket, size: int) -> bytes:
        if not reads:
            time.sleep(0.5)  # the worker meets a full socket and hands the rest to the loop
        reads.append(size)
        result: bytes = real_recv_exact(sock, size)
        return result

    monkeypatch.setattr(server_module, "WRITE_DEADLINE_S", 2.0)
    client = parsec.client()
    client.list_providers()  # discovery first, on normal reads
    monkeypatch.setattr(client_module, "_recv_exact", read_late)
    assert len(client.generate_random(1_000_000)) == 1_000_000
    monkeypatch.setattr(client_module, "_recv_exact", real_recv_exact)
    for _ in range(20):
        assert ParsecClient(parsec.socket_path).ping() == (1, 0)
    assert parsec.thread.is_alive()
    time.sleep(2.5)  # past the write deadline the response had
    parsec.server.wake()
    until(lambda: parsec.server.open_connections() == 0)
    time.sleep(0.1)
    assert parsec.server.open_connections() == 0, "each connection is released once"


# --- the service manager (systemd's notification protocol) -------------------------------------


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    """A datagram socket where systemd would listen, named in NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        sock.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    else:
        name = f"parsec-demo-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    sock.settimeout(5)
    with sock:
        yield sock


def test_the_daemon_tells_the_service_manager_ready_reloading_and_stopping(
    notify_socket: socket.socket, tmp_path: Path
) -> None:
    daemon = ReloadingEcho(tmp_path / "echo.sock")
    messages: list[str] = []

    def signals() -> None:
        messages.append(notify_socket.recv(4096).decode())
        # READY=1 comes once the daemon serves: its socket answers now.
        assert echo(tmp_path / "echo.sock") == b"ping\n"
        os.kill(os.getpid(), signal.SIGHUP)
        messages.append(notify_socket.recv(4096).decode())
        messages.append(notify_socket.recv(4096).decode())
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=signals, name="manager")
    sender.start()
    daemon.serve_until_signalled()
    sender.join(5)
    messages.append(notify_socket.recv(4096).decode())
    ready, reloading, ready_again, stopping = messages
    assert ready == "READY=1" and ready_again == "READY=1"
    first, clock = reloading.split("\n")
    assert first == "RELOADING=1"
    assert clock.startswith("MONOTONIC_USEC=")
    usec = int(clock.removeprefix("MONOTONIC_USEC="))
    assert 0 < usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert stopping == "STOPPING=1"
    assert daemon.reloads == [threading.current_thread().name]


def test_without_a_service_manager_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from parsec_service import service_manager

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert service_manager.notify(service_manager.READY) is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert service_manager.notify(service_manager.READY) is False
    assert "could not notify the service manager" in caplog.text
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert service_manager.notify(service_manager.READY) is False


def test_a_signal_taken_by_another_thread_still_stops_the_loop(tmp_path: Path) -> None:
    """The kernel may deliver a process's SIGTERM to any of its threads; Python runs the handler
    in the main thread only, which waits in the selector without a timeout. The wake-up file
    must end that wait."""
    daemon = EchoDaemon(tmp_path / "echo.sock")
    rescued: list[bool] = []

    def signal_this_thread() -> None:
        assert daemon.started.wait(5)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # taken here, not in main
        deadline = time.monotonic() + 5
        while daemon.stopped == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if daemon.stopped == 0:
            rescued.append(True)
            daemon.request_stop()

    sender = threading.Thread(target=signal_this_thread, name="sender")
    sender.start()
    daemon.serve_until_signalled()
    sender.join(10)
    assert rescued == [], "the loop slept through the signal"
    assert daemon.stopped == 1
    assert signal.set_wakeup_fd(-1) == -1, "the wake-up file was put back"
