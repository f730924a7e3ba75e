"""The skeleton of every daemon of the project (the Parsec service, the RSE model): one
listener, one loop, one way to wake it, one way to stop, one set of signals.

A daemon subclasses ``UnixDaemon`` and says only what is its own: what to do with an accepted
connection (``on_accept``), with a socket it registered in ``selector`` (``on_ready``), what
else to do after each wait (``after_wait``), when it is ``idle`` enough to stop, how it
reloads (``on_reload``) and what it releases at the end (``on_stop``). The rules:

- **Listening.** ``listen_unix`` makes the listener: a stale socket file at the path is
  replaced, a live one (another daemon answers there) is refused, and anything that is not a
  socket is refused and left alone. The listener is non-blocking.
- **The loop.** ``serve_forever`` runs ``on_start``, then waits in one selector on the
  listener, the wake pipe and whatever the daemon registered, for at most ``next_timeout()``
  seconds (``None``: until something happens). A readable listener is accepted from until it
  has nothing more, at most ``ACCEPT_BURST`` connections a time, and each accepted socket goes
  to ``on_accept`` in blocking mode; an accept that fails for another reason (no file
  descriptor left, say) goes to ``accept_failed`` and the client waits in the backlog. A
  readable wake pipe is drained. Any other ready key goes to ``on_ready``. After each wait the
  loop runs ``on_reload`` if a reload was requested, then ``after_wait``.
- **The service manager.** Under systemd (``NOTIFY_SOCKET``, a ``Type=notify`` unit) the
  daemon says ``READY=1`` once ``on_start`` is done and the listener answers, brackets each
  reload with ``RELOADING=1`` and ``READY=1``, and says ``STOPPING=1`` when a stop begins
  (``service_manager``).
- **Waking.** ``wake()`` makes the wait return. Any thread or signal handler may call it: it
  never blocks (a full pipe already holds a wake-up) and does nothing once the daemon is
  closed, so a late call never writes into a file descriptor number reused by someone else.
- **Stopping.** ``request_stop()``, from any thread or a signal handler, sets the flag and
  wakes the loop. From then on nothing more is accepted: at its next turn the loop closes the
  listener (connections still in the backlog are reset by the kernel) and removes the socket
  file, then goes on until ``idle()`` says the daemon has nothing in flight, looking again at
  least every ``STOP_POLL_S`` seconds. Then ``on_stop`` releases the rest and the selector and
  the wake pipe are closed. This cleanup runs however the loop ends, by a stop or an error.
- **The socket file.** It is removed at the stop only while the path still holds the very
  socket the daemon bound: a socket of another daemon or a regular file put there meanwhile
  stays.
- **Signals.** ``serve_until_signalled()`` (from the main thread) turns SIGTERM and SIGINT
  into a stop and, for a daemon with ``RELOADS`` set, SIGHUP into a reload. The kernel may
  deliver a signal to any thread, and Python runs handlers only in the main thread, which may
  be waiting in the selector without a timeout: so the wake pipe is also Python's signal wake-up
  file (``signal.set_wakeup_fd``), written at delivery whichever thread took the signal. The
  handlers then only set the flag (taking no lock the interrupted main thread might hold), and
  the previous handlers and wake-up file are back when it returns. A daemon that does not
  reload leaves SIGHUP as it was. A daemon that is its process's program starts through
  ``serve_as_program``, which holds SIGTERM and SIGINT from before its socket listens until
  their handlers are in place: whoever sees the socket accept may stop it at once, and that is
  a clean stop, not a death by signal.
- **Bounded connections.** ``limits`` (``ConnectionLimits``) counts the open connections: the
  daemon admits each accepted one against its limits, in all and per peer, closes at once one
  that is refused, and releases each admitted one when it closes; ``open_connections()`` says
  how many are open.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import selectors
import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from . import service_manager
from .unix_socket import listen_unix, remove_socket_file, socket_file_identity

log = logging.getLogger(__name__)

#: At most this many connections are accepted in one turn of the loop; it comes back for more.
ACCEPT_BURST = 64
#: While stopping with work in flight, the loop looks again this often (seconds).
STOP_POLL_S = 0.05
#: The signals that stop a daemon (``serve_until_signalled``, ``serve_as_program``).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


class _Role(enum.Enum):
    LISTENER = "listener"
    WAKE = "wake"


class UnixDaemon:
    """The listener, the loop, the wake pipe, the stop and the signals of a daemon."""

    #: Whether SIGHUP reloads this daemon (``on_reload``).
    RELOADS: ClassVar[bool] = False

    def __init__(
        self,
        socket_path: Path,
        owner: str,
        backlog: int,
        mode: int | None = None,
        logger: logging.Logger = log,
    ) -> None:
        """Listen on ``socket_path`` (``owner`` names the daemon in a refusal, ``mode`` sets the
        socket file's permissions); ``logger`` reports failed accepts."""
        self.socket_path = socket_path
        self.logger = logger
        self._listener: socket.socket | None = listen_unix(socket_path, owner, backlog, mode)
        self._identity = socket_file_identity(socket_path)
        self._listener.setblocking(False)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake_lock = threading.RLock()  # reentrant: a signal handler may interrupt wake()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._previous_wakeup_fd: int | None = None
        self.selector = selectors.DefaultSelector()
        self.selector.register(self._listener, selectors.EVENT_READ, _Role.LISTENER)
        self.selector.register(self._wake_r, selectors.EVENT_READ, _Role.WAKE)
        self.limits = ConnectionLimits()

    # --- what a daemon says of itself ---------------------------------------------------------

    def on_start(self) -> None:
        """In ``serve_forever``, before the first wait."""

    def on_accept(self, sock: socket.socket) -> None:
        """A new connection (blocking mode); the daemon owns it from here."""
        raise NotImplementedError

    def accept_failed(self, error: OSError) -> None:
        self.logger.error("cannot accept a connection: %s", error)

    def on_ready(self, data: Any, events: int) -> None:
        """A socket the daemon registered in ``selector`` with ``data`` is ready."""
        raise NotImplementedError

    def next_timeout(self) -> float | None:
        """How long the next wait may last, in seconds (``None``: no limit)."""
        return None

    def after_wait(self) -> None:
        """After each wait, whatever it returned."""

    def on_reload(self) -> None:
        """A reload was requested (SIGHUP); runs in the loop."""

    def idle(self) -> bool:
        """While stopping: True once nothing is in flight and the loop may end."""
        return True

    def on_stop(self) -> None:
        """After the loop, the listener closed: release everything the daemon holds."""

    # --- from any thread or signal handler ----------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def open_connections(self) -> int:
        return self.limits.open

    def request_stop(self) -> None:
        self._stop.set()
        self.wake()

    def request_reload(self) -> None:
        self._reload.set()
        self.wake()

    def wake(self) -> None:
        with self._wake_lock:
            if self._closed:
                return
            with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
                os.write(self._wake_w, b"x")

    # --- the loop -----------------------------------------------------------------------------

    def serve_forever(self) -> None:
        try:
            self.on_start()
            service_manager.notify(service_manager.READY)
            told_stopping = False
            while True:
                if self.stopping:
                    if not told_stopping:
                        service_manager.notify(service_manager.STOPPING)
                        told_stopping = True
                    self._close_listener()
                    if self.idle():
                        break
                for key, events in self.selector.select(self._timeout()):
                    if key.data is _Role.LISTENER:
                        self._accept()
                    elif key.data is _Role.WAKE:
                        self._drain_wake()
                    else:
                        self.on_ready(key.data, events)
                if self._reload.is_set():
                    self._reload.clear()
                    service_manager.notify(*service_manager.reloading())
                    self.on_reload()
                    service_manager.notify(service_manager.READY)
                self.after_wait()
        finally:
            self._close_listener()
            try:
                self.on_stop()
            finally:
                self._close_loop()

    def serve_until_signalled(self) -> None:
        """``serve_forever`` with SIGTERM/SIGINT (and SIGHUP if it reloads) handled."""

        def stop(_signum: int, _frame: FrameType | None) -> None:
            self._stop.set()  # the wake-up file has woken the loop already

        def reload(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()

        handlers = dict.fromkeys(STOP_SIGNALS, stop)
        if self.RELOADS:
            handlers[signal.SIGHUP] = reload
        previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
        # Put back by _close_loop, before the pipe closes.
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        # Held by serve_as_program until now: one that came meanwhile is delivered here.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        try:
            self.serve_forever()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler if handler is not None else signal.SIG_DFL)

    def _timeout(self) -> float | None:
        timeout = self.next_timeout()
        if self.stopping:
            return STOP_POLL_S if timeout is None else min(timeout, STOP_POLL_S)
        return timeout

    def _accept(self) -> None:
        for _ in range(ACCEPT_BURST):
            if self.stopping or self._listener is None:
                return
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self.accept_failed(error)
                return
            if sock.gettimeout() is not None:  # only under socket.setdefaulttimeout()
                sock.setblocking(True)
            self.on_accept(sock)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _close_listener(self) -> None:
        if self._listener is None:
            return
        self.selector.unregister(self._listener)
        self._listener.close()
        self._listener = None
        remove_socket_file(self.socket_path, self._identity)

    def _close_loop(self) -> None:
        if self._previous_wakeup_fd is not None:  # serve_until_signalled's, in the main thread
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None
        with self._wake_lock:
            self._closed = True
            self.selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)


class Refusal(enum.Enum):
    """Why ``ConnectionLimits.admit`` refused a connection."""

    ALL = "all"  # the daemon's own limit
    PEER = "peer"  # this peer's share
    RESERVED = "reserved"  # the last places, kept for peers that hold few


class ConnectionLimits:
    """Open connections counted in all and per peer, against limits given at each admission
    (so that a reloaded configuration applies at once). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._per_peer: Counter[Hashable] = Counter()

    @property
    def open(self) -> int:
        with self._lock:
            return self._open

    def admit(
        self,
        peer: Hashable,
        limit: int,
        per_peer_limit: int | None = None,
        reserve: int = 0,
        guaranteed: int = 0,
    ) -> Refusal | None:
        """Count a new connection of ``peer`` and return None, or refuse it (nothing counted).
        The last ``reserve`` places of ``limit`` go only to peers holding fewer than
        ``guaranteed`` connections, so that peers holding many cannot lock a new one out."""
        with self._lock:
            held = self._per_peer[peer]
            if self._open >= limit:
                return Refusal.ALL
            if per_peer_limit is not None and held >= per_peer_limit:
                return Refusal.PEER
            if self._open >= limit - reserve and held >= guaranteed:
                return Refusal.RESERVED
            self._open += 1
            self._per_peer[peer] += 1
            return None

    def release(self, peer: Hashable) -> None:
        """A connection ``admit`` counted has closed."""
        with self._lock:
            self._open -= 1
            self._per_peer[peer] -= 1
            if not self._per_peer[peer]:
                del self._per_peer[peer]


def serve_as_program(make: Callable[[], UnixDaemon]) -> None:
    """The daemon ``make`` builds, as this process's program (``serve_until_signalled``).

    SIGTERM and SIGINT are held from before ``make`` (which makes the listener) until their
    handlers are in place: a starter that sees the socket accept a connection may stop the
    daemon at once, and the daemon then says it was ready and stops as it always does. If
    ``make`` fails, they are let through again before its error goes on."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        daemon = make()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        raise
    daemon.serve_until_signalled()
