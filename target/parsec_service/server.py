"""The Parsec service front end: listener, request validation in upstream's order, dispatch.

Validation follows upstream's order and statuses. The header stage (magic, header size, version,
reserved bytes, body limit, reading body and authentication, content and accept types,
authenticator, opcode and provider existence) answers failures with provider 0, session 0 and
opcode Ping. Then, with the request's own provider, session and opcode: authenticator
registration, authentication, provider registration, core/crypto opcode mismatch, admin rules,
body decoding, mandatory fields, and finally the provider's own result.

One event loop reads every request, within ``[listener] timeout`` milliseconds for the whole
request, and a pool of ``thread_pool_size`` workers runs them (see ``ParsecServer``), so a slow
client holds no worker and never blocks the others. SIGHUP reloads the configuration; SIGTERM and
SIGINT stop after in-flight requests finish.
"""

from __future__ import annotations

import logging
import os
import select
import selectors
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from . import config as config_module
from .auth import Peer, authenticate, peer_of
from .config import ServiceConfig
from .constants import (
    ADMIN_OPCODES,
    CORE_OPCODES,
    AuthType,
    Opcode,
    ProviderId,
    ResponseStatus,
    status_from_psa,
)
from .contracts import CONTRACTS
from .daemon import Refusal, UnixDaemon, serve_as_program
from .kim import KeyInfoManager
from .providers import Application, CoreProvider, TrustedServiceProvider
from .psa import PsaError
from .wire import HEADER, Header, WireError, check_fixed_fields, header_stage_error, response_header

log = logging.getLogger("parsec")

Reader = Callable[[int], bytes]
Item = TypeVar("Item")


class EmptyConnection(Exception):
    """The client connected and closed without sending anything: nothing to answer."""


class ParsecService:
    def __init__(
        self,
        config: ServiceConfig,
        rse_socket: Path,
        store_dir: Path,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        kim_path = config.kim_db_path or store_dir / "kim.sqlite3"
        self.kim = KeyInfoManager(kim_path)
        self.crypto = TrustedServiceProvider(
            rse_socket,
            self.kim,
            lambda: self.config,
        )
        self.core = CoreProvider(self.crypto, lambda: self.config.auth_type)
        self.providers: dict[int, CoreProvider | TrustedServiceProvider] = {
            ProviderId.CORE: self.core,
            ProviderId.TRUSTED_SERVICE: self.crypto,
        }

    def close(self) -> None:
        self.crypto.close()
        self.kim.close()

    # --- one request --------------------------------------------------------------------------

    def serve_request(self, read: Reader, peer: Peer) -> bytes:
        """Read one request with ``read`` and return the whole response."""
        started = time.perf_counter()
        try:
            header, body, auth = self._read_request(read)
        except WireError as error:
            self._log(None, None, error.status, started, error.detail)
            reply = header_stage_error(error.status)
            return reply.encode()
        caller: list[Application] = []
        payload = b""
        detail = ""
        try:
            result = self._dispatch(header, body, auth, peer, caller)
            payload = result.SerializeToString()
            if len(payload) > self.config.buffer_size_limit:
                raise WireError(ResponseStatus.RESPONSE_TOO_LARGE, f"{len(payload)} bytes")
            status = ResponseStatus.SUCCESS
        except WireError as error:
            status, detail, payload = error.status, error.detail, b""
        except PsaError as error:
            status, detail, payload = status_from_psa(error.status), str(error), b""
        except Exception as error:  # a bug must cost one request, not the connection
            log.exception("internal error serving a request")
            status, detail, payload = ResponseStatus.PSA_ERROR_GENERIC_ERROR, repr(error), b""
        self._log(header, caller[0] if caller else None, status, started, detail)
        return response_header(header, status, len(payload)).encode() + payload

    def _read_request(self, read: Reader) -> tuple[Header, bytes, bytes]:
        header = Header.decode(read(HEADER.size))
        check_fixed_fields(header, self.config.body_len_limit)
        body = read(header.body_len)
        auth = read(header.auth_len)
        if header.content_type != 0:
            raise WireError(
                ResponseStatus.CONTENT_TYPE_NOT_SUPPORTED, f"type {header.content_type}"
            )
        if header.accept_type != 0:
            raise WireError(ResponseStatus.ACCEPT_TYPE_NOT_SUPPORTED, f"type {header.accept_type}")
        if header.auth_type not in AuthType._value2member_map_:
            raise WireError(ResponseStatus.AUTHENTICATOR_DOES_NOT_EXIST, f"type {header.auth_type}")
        if header.opcode not in Opcode._value2member_map_:
            raise WireError(ResponseStatus.OPCODE_DOES_NOT_EXIST, f"opcode 0x{header.opcode:x}")
        if header.provider not in ProviderId._value2member_map_:
            raise WireError(ResponseStatus.PROVIDER_DOES_NOT_EXIST, f"provider {header.provider}")
        return header, body, auth

    def _dispatch(
        self, header: Header, body: bytes, auth: bytes, peer: Peer, caller: list[Application]
    ) -> Message:
        """Run the request; ``caller`` receives the application once it is authenticated."""
        config = self.config
        app: Application | None = None
        if header.auth_type != AuthType.NO_AUTH:
            if header.auth_type != config.auth_type:
                raise WireError(
                    ResponseStatus.AUTHENTICATOR_NOT_REGISTERED, AuthType(header.auth_type).label
                )
            app = Application(config.auth_type, authenticate(config.auth_type, auth, peer), peer)
            caller.append(app)
        provider = self.providers.get(header.provider)
        if provider is None:
            raise WireError(ResponseStatus.PROVIDER_NOT_REGISTERED, f"provider {header.provider}")
        opcode = Opcode(header.opcode)
        if (opcode in CORE_OPCODES) != (provider.id == ProviderId.CORE):
            raise WireError(
                ResponseStatus.PSA_ERROR_NOT_SUPPORTED, f"{opcode.label} on {provider.id.label}"
            )
        if opcode in ADMIN_OPCODES:
            if app is None:
                raise WireError(ResponseStatus.NOT_AUTHENTICATED, "admin operation without auth")
            if app.name not in config.admins:
                raise WireError(ResponseStatus.ADMIN_OPERATION, f"{app.name} is not an admin")
        handler = provider.handlers.get(opcode)
        if handler is None or opcode not in CONTRACTS:
            raise WireError(ResponseStatus.PSA_ERROR_NOT_SUPPORTED, f"{opcode.label} unsupported")
        operation = CONTRACTS[opcode][0]()
        try:
            operation.ParseFromString(body)
        except DecodeError as exc:
            raise WireError(ResponseStatus.DESERIALIZING_BODY_FAILED, str(exc)) from None
        return handler(app, operation)

    def _log(
        self,
        header: Header | None,
        app: Application | None,
        status: ResponseStatus,
        started: float,
        detail: str,
    ) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        elapsed_us = int((time.perf_counter() - started) * 1e6)
        if header is None:
            where = "provider=- opcode=-"
        else:
            opcode = Opcode(header.opcode).label
            where = f"provider={header.provider} opcode={opcode}"
        line = (
            f"request app={app.name if app else '-'} {where} "
            f"status={status.label} duration_us={elapsed_us}"
        )
        if detail and status != ResponseStatus.SUCCESS and self.config.log_error_details:
            line += f" detail={detail!r}"
        log.info(line)

    # --- configuration ------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: re-read the configuration file; keep the old one if the new one is bad."""
        try:
            new = config_module.load(self.config_path)
        except config_module.ConfigError as exc:
            log.error("configuration not reloaded: %s", exc)
            return
        if os.geteuid() == 0 and not new.allow_root:
            log.error(
                "configuration not reloaded: it sets allow_root = false and the service runs "
                "as root"
            )
            return
        # Where the service listens and keeps its keys changes only on restart.
        self.config = replace(
            new, socket_path=self.config.socket_path, kim_db_path=self.config.kim_db_path
        )
        configure_logging(new)
        log.warning("configuration reloaded from %s", self.config_path)


class _LogFormatter(logging.Formatter):
    """``<local time>.<ms> <level> <message>``, the date and time formatted once a second
    (the service logs a line per request)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        self._second = -1
        self._formatted = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # The handler's lock is held while it formats: no other thread is in here.
        second = int(record.created)
        if second != self._second:
            self._formatted = time.strftime(self.datefmt or "", self.converter(record.created))
            self._second = second
        return self._formatted


def configure_logging(config: ServiceConfig) -> None:
    logging.addLevelName(5, "TRACE")
    root = logging.getLogger("parsec")
    root.setLevel(config_module.LOG_LEVELS[config.log_level])
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_LogFormatter())
        root.addHandler(handler)


def _lean_log_records() -> None:
    """The service process's log records carry no caller, thread or process (its format names
    none of them): the logging module's documented optimisation, for a line per request."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def buffer_reader(data: bytes | bytearray, short: str = "connection closed mid-request") -> Reader:
    """Reads of exact sizes from what the listener received; running out is ``short``."""
    view = memoryview(bytes(data))
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        if position + size > len(view):
            if not view:
                raise EmptyConnection
            raise WireError(ResponseStatus.CONNECTION_ERROR, short)
        chunk = bytes(view[position : position + size])
        position += size
        return chunk

    return read


def request_size(received: bytes | bytearray, body_len_limit: int) -> int:
    """How many bytes the request that starts with ``received`` has: the header's size until
    the header is in, then header, body and authentication; a header the service refuses
    anyway needs nothing more."""
    if len(received) < HEADER.size:
        return HEADER.size
    header = Header.decode(bytes(received[: HEADER.size]))
    try:
        check_fixed_fields(header, body_len_limit)
    except WireError:
        return HEADER.size
    return HEADER.size + header.body_len + header.auth_len


#: How long a response may take to leave, once computed.
WRITE_DEADLINE_S = 5.0


class _Connection:
    """One client connection: its peer, the request received so far, then the response."""

    __slots__ = ("deadline", "outgoing", "peer", "received", "registered", "sock")

    def __init__(self, sock: socket.socket, peer: Peer, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.received = bytearray()
        self.outgoing: memoryview | None = None
        self.registered = False  # with the loop's selector

    def send_some(self) -> bool:
        """Send what the socket takes now; True when done (sent, or the peer is gone)."""
        try:
            while self.outgoing:
                sent = self.sock.send(self.outgoing)
                self.outgoing = self.outgoing[sent:]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return True

    def hung_up(self) -> bool:
        """Whether the client has closed its end: nobody is left to read an answer."""
        poller = select.poll()
        poller.register(self.sock, select.POLLHUP)
        return bool(poller.poll(0))


class WorkerPool(Generic[Item]):
    """``size`` threads that run ``work(item)`` for the submitted items, sharing themselves
    fairly between the peers that submitted them.

    Each peer's items run in submission order; the peers with items waiting take turns (round
    robin), and one peer never has more than ``per_peer()`` items running at once (read at
    each turn: a reloaded configuration applies at once). So a peer that floods the service
    with requests holds at most its share of the workers, and another peer's request waits
    for at most one turn. ``shutdown`` lets everything submitted finish.
    """

    def __init__(
        self, size: int, work: Callable[[Item], None], name: str, per_peer: Callable[[], int]
    ) -> None:
        self._size = size
        self._work = work
        self._name = name
        self._per_peer = per_peer
        self._turns = threading.Condition(threading.Lock())
        self._waiting: dict[Hashable, deque[Item]] = {}
        self._running: Counter[Hashable] = Counter()
        self._ready: deque[Hashable] = deque()  # peers with items waiting and room to run
        self._in_ready: set[Hashable] = set()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for number in range(self._size):
            thread = threading.Thread(target=self._run, name=f"{self._name}_{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, peer: Hashable, item: Item) -> None:
        with self._turns:
            self._waiting.setdefault(peer, deque()).append(item)
            self._offer(peer)

    def _offer(self, peer: Hashable) -> None:
        """Give ``peer`` a turn if it has items waiting and room to run one. Lock held."""
        if peer in self._in_ready or not self._waiting.get(peer):
            return
        if self._running[peer] >= self._per_peer():
            return
        self._ready.append(peer)
        self._in_ready.add(peer)
        self._turns.notify()

    def _take(self) -> tuple[Hashable, Item] | None:
        with self._turns:
            while not self._ready:
                if self._stopping and not self._waiting:
                    return None
                self._turns.wait()
            peer = self._ready.popleft()
            self._in_ready.discard(peer)
            waiting = self._waiting[peer]
            item = waiting.popleft()
            if not waiting:
                del self._waiting[peer]
            self._running[peer] += 1
            self._offer(peer)  # its next item, after the other peers' turns
            return peer, item

    def _finished(self, peer: Hashable) -> None:
        with self._turns:
            self._running[peer] -= 1
            if not self._running[peer]:
                del self._running[peer]
            self._offer(peer)
            if self._stopping and not self._waiting:
                self._turns.notify_all()

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            peer, item = taken
            try:
                self._work(item)
            except Exception:  # a bug must cost one request, not a worker
                log.exception("internal error in a worker")
            finally:
                self._finished(peer)

    def shutdown(self) -> None:
        with self._turns:
            self._stopping = True
            self._turns.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads.clear()


class ParsecServer(UnixDaemon):
    """The listener: one event loop does all socket I/O, a pool of workers runs the requests.

    The loop (``UnixDaemon``'s) accepts, reads each request (non-blocking, within
    ``[listener] timeout`` for the whole request counted from the accept) and hands complete
    requests to ``[core_settings] thread_pool_size`` workers; a worker sends its response if
    the socket takes it at once, else the loop finishes sending within ``WRITE_DEADLINE_S``.
    Slow or idle clients therefore hold no worker, and accepting never waits for them. Open
    connections are bounded in all (``[listener] max_connections``) and per peer uid
    (``max_connections_per_peer``): one local user cannot take the others' share. A stop lets
    the requests already received finish and be answered.
    """

    RELOADS = True

    def __init__(self, service: ParsecService) -> None:
        # Any local user may connect (mode 0666); authentication decides the rest.
        super().__init__(service.config.socket_path, "service", 128, mode=0o666, logger=log)
        self.service = service
        self._workers: WorkerPool[_Connection] = WorkerPool(
            service.config.thread_pool_size,
            self._work,
            "parsec",
            lambda: self.service.config.max_requests_in_flight_per_peer,
        )
        self._lock = threading.Lock()  # the worker count and the hand-back queue
        self._in_workers = 0
        self._handed_back: deque[_Connection] = deque()
        self._last_refusal_log = 0.0
        self._reaper_stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="parsec_reaper", daemon=True)

    # --- the skeleton's hooks -----------------------------------------------------------------

    def on_start(self) -> None:
        self._workers.start()
        settled = self._reconcile()
        self._reaper.start()
        log.warning(
            "Parsec service ready on %s (provider %s, %d interrupted key operations settled)",
            self.socket_path,
            ProviderId.TRUSTED_SERVICE.label,
            settled,
        )

    def on_accept(self, sock: socket.socket) -> None:
        config = self.service.config
        try:
            peer = peer_of(sock)
        except OSError:
            sock.close()
            return
        refusal = self.limits.admit(
            peer.uid,
            config.max_connections,
            config.max_connections_per_peer,
            config.connection_reserve,
            config.connections_guaranteed_per_peer,
        )
        if refusal is not None:
            sock.close()
            self._log_refusal(peer, refusal)
            return
        sock.setblocking(False)
        conn = _Connection(sock, peer, time.monotonic() + config.listener_timeout_ms / 1000)
        # The request is often there already: then the connection never enters the selector.
        self._read(conn)

    def on_ready(self, data: Any, events: int) -> None:
        conn: _Connection = data
        if conn.outgoing is None:
            self._read(conn)
        elif conn.send_some():
            self._unwatch(conn)
            self._close(conn)

    def next_timeout(self) -> float | None:
        deadlines = [c.deadline for c in self._connections()]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def after_wait(self) -> None:
        self._take_handed_back()
        self._expire()

    def on_reload(self) -> None:
        self.service.reload()

    def idle(self) -> bool:
        with self._lock:
            busy = self._in_workers or self._handed_back
        return not busy and not self._connections()

    def on_stop(self) -> None:
        for conn in self._connections():
            self._unwatch(conn)
            self._close(conn)
        self._reaper_stop.set()
        if self._reaper.is_alive():
            self._reaper.join()
        self._workers.shutdown()  # in-flight requests finish
        for conn in self._handed_back:
            self._close(conn)
        self.service.close()
        log.warning("Parsec service stopped")

    # --- the loop's parts ---------------------------------------------------------------------

    def _reconcile(self) -> int:
        try:
            return self.service.crypto.reconcile()
        except PsaError as exc:
            log.warning("RSE not reachable at start (%s); will settle pending keys later", exc)
            return 0

    def _reap(self) -> None:
        """Reclaim the temporary keys of processes that are gone, every
        ``[core_settings] temporary_key_check_interval`` seconds."""
        while not self._reaper_stop.wait(self.service.config.temporary_key_check_interval):
            try:
                self.service.crypto.reclaim_temporary()
            except Exception:  # a failure here must not end the checks
                log.exception("internal error reclaiming temporary keys")

    def _connections(self) -> list[_Connection]:
        return [
            key.data
            for key in self.selector.get_map().values()
            if isinstance(key.data, _Connection)
        ]

    def _log_refusal(self, peer: Peer, refusal: Refusal) -> None:
        now = time.monotonic()
        if now - self._last_refusal_log < 1.0:
            return
        self._last_refusal_log = now
        config = self.service.config
        if refusal is Refusal.ALL:
            log.error(
                "refusing connections: %d open ([listener] max_connections)",
                self.open_connections(),
            )
        elif refusal is Refusal.PEER:
            log.error(
                "refusing connections from uid %d: %d open ([listener] max_connections_per_peer)",
                peer.uid,
                config.max_connections_per_peer,
            )
        else:
            log.error(
                "refusing connections from uid %d: the last %d places are kept for peers with "
                "fewer than %d open ([listener] connection_reserve)",
                peer.uid,
                config.connection_reserve,
                config.connections_guaranteed_per_peer,
            )

    def _watch(self, conn: _Connection, events: int) -> None:
        """Let the loop wait for ``events`` on the connection (reading, or writing)."""
        if conn.registered:
            self.selector.modify(conn.sock, events, conn)
        else:
            self.selector.register(conn.sock, events, conn)
            conn.registered = True

    def _unwatch(self, conn: _Connection) -> None:
        if conn.registered:
            self.selector.unregister(conn.sock)
            conn.registered = False

    def _read(self, conn: _Connection) -> None:
        """Read what has arrived; a complete request goes to a worker, else the loop waits."""
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            if not conn.registered:
                self._watch(conn, selectors.EVENT_READ)
            return
        except OSError as exc:
            self._answer_incomplete(conn, str(exc))
            return
        if not chunk:
            self._answer_incomplete(conn, "connection closed mid-request")
            return
        conn.received += chunk
        if len(conn.received) >= request_size(conn.received, self.service.config.body_len_limit):
            self._unwatch(conn)
            with self._lock:
                self._in_workers += 1
            self._workers.submit(conn.peer.uid, conn)
        elif not conn.registered:
            self._watch(conn, selectors.EVENT_READ)

    def _answer_incomplete(self, conn: _Connection, why: str) -> None:
        """The request will not be completed: answer ConnectionError (nothing, if empty)."""
        self._unwatch(conn)
        if not conn.received:
            self._close(conn)
            return
        response = self.service.serve_request(buffer_reader(conn.received, why), conn.peer)
        conn.outgoing = memoryview(response)
        if conn.send_some():
            self._close(conn)
        else:
            self._send_later(conn)

    def _work(self, conn: _Connection) -> None:
        """In a worker: run the request, send the response or hand it back to the loop. A
        request whose client hung up while it waited for a worker is not run: a client that
        floods the service and goes away leaves no queue of work (RSA keys to make, say)
        behind it for the others to wait out."""
        try:
            if conn.hung_up():
                log.info(
                    "request of uid %d dropped: its client hung up before a worker took it",
                    conn.peer.uid,
                )
                self._close(conn)
                return
            response = self.service.serve_request(buffer_reader(conn.received), conn.peer)
            conn.outgoing = memoryview(response)
            if conn.send_some():
                self._close(conn)
            else:
                with self._lock:
                    self._handed_back.append(conn)
                self.wake()
        finally:
            with self._lock:
                self._in_workers -= 1
            if self.stopping:
                self.wake()

    def _take_handed_back(self) -> None:
        with self._lock:
            handed_back = list(self._handed_back)
            self._handed_back.clear()
        for conn in handed_back:
            self._send_later(conn)

    def _send_later(self, conn: _Connection) -> None:
        """The loop sends the rest of the response, within ``WRITE_DEADLINE_S``."""
        conn.deadline = time.monotonic() + WRITE_DEADLINE_S
        self._watch(conn, selectors.EVENT_WRITE)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in self._connections():
            if conn.deadline > now:
                continue
            if conn.outgoing is None:
                self._answer_incomplete(conn, "timed out reading")
            else:  # the client does not read its response
                self._unwatch(conn)
                self._close(conn)

    def _close(self, conn: _Connection) -> None:
        conn.sock.close()
        self.limits.release(conn.peer.uid)


def serve(
    config_path: Path | None, rse_socket: Path, store_dir: Path, socket_path: Path | None
) -> int:
    config = config_module.load(config_path)
    if socket_path is not None:
        config = replace(config, socket_path=socket_path)
    configure_logging(config)
    _lean_log_records()
    if os.geteuid() == 0 and not config.allow_root:
        raise config_module.ConfigError(
            "refusing to run as root: set [core_settings] allow_root = true in the configuration"
        )
    service = ParsecService(config, rse_socket, store_dir, config_path)
    serve_as_program(lambda: ParsecServer(service))
    return 0
