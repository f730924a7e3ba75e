"""The Parsec service front end: listener, request validation in upstream's order, dispatch.

Validation follows upstream's order and statuses. The header stage (magic, header size, version,
reserved bytes, body limit, reading body and authentication, content and accept types,
authenticator, opcode and provider existence) answers failures with provider 0, session 0 and
opcode Ping. Then, with the request's own provider, session and opcode: authenticator
registration, authentication, provider registration, core/crypto opcode mismatch, admin rules,
body decoding, mandatory fields, and finally the provider's own result.

Every connection gets a thread; reads time out after ``[listener] timeout`` milliseconds, so a
slow client costs a thread for a bounded time and never blocks the others. SIGHUP reloads the
configuration; SIGTERM and SIGINT stop after in-flight requests finish.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import FrameType

from google.protobuf.message import DecodeError, Message

from ..psa import PsaError
from ..unix_socket import listen_unix
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
from .kim import KeyInfoManager
from .providers import Application, CoreProvider, TrustedServiceProvider
from .wire import HEADER, Header, WireError, check_fixed_fields, header_stage_error, response_header

log = logging.getLogger("parsec")
MAX_CONNECTIONS = 256
WORKERS = 64

Reader = Callable[[int], bytes]


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
            rse_socket, self.kim, lambda: self.config.buffer_size_limit
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
            app = Application(config.auth_type, authenticate(config.auth_type, auth, peer))
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
        # Where the service listens and keeps its keys changes only on restart.
        self.config = replace(
            new, socket_path=self.config.socket_path, kim_db_path=self.config.kim_db_path
        )
        configure_logging(new)
        log.warning("configuration reloaded from %s", self.config_path)


def configure_logging(config: ServiceConfig) -> None:
    logging.addLevelName(5, "TRACE")
    root = logging.getLogger("parsec")
    root.setLevel(config_module.LOG_LEVELS[config.log_level])
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
        root.addHandler(handler)


def socket_reader(sock: socket.socket) -> Reader:
    """Reads of exact sizes from ``sock``, buffered: a whole small request costs one recv."""
    buffer = bytearray()
    received = 0

    def read(size: int) -> bytes:
        nonlocal received
        while len(buffer) < size:
            try:
                chunk = sock.recv(max(65536, size - len(buffer)))
            except TimeoutError:
                raise WireError(ResponseStatus.CONNECTION_ERROR, "timed out reading") from None
            except OSError as exc:
                raise WireError(ResponseStatus.CONNECTION_ERROR, str(exc)) from None
            if not chunk:
                if received == 0:
                    raise EmptyConnection
                raise WireError(ResponseStatus.CONNECTION_ERROR, "connection closed mid-request")
            buffer.extend(chunk)
            received += len(chunk)
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    return read


class ParsecServer:
    def __init__(self, service: ParsecService) -> None:
        self.service = service
        self.socket_path = service.config.socket_path
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # Idle workers are reused, and more are started while all are busy, so a slow client
        # holds one worker for at most the listener timeout and never holds up the others.
        self._workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="parsec")
        # Any local user may connect (mode 0666); authentication decides the rest.
        self._listener = listen_unix(self.socket_path, "service", 128, mode=0o666)

    def request_stop(self) -> None:
        self._stop.set()
        self._wake()

    def request_reload(self) -> None:
        self._reload.set()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def serve_forever(self) -> None:
        settled = self._reconcile()
        log.warning(
            "Parsec service ready on %s (provider %s, %d interrupted key operations settled)",
            self.socket_path,
            ProviderId.TRUSTED_SERVICE.label,
            settled,
        )
        listener = self._listener.fileno()
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([listener, self._wake_r], [], [])
                if self._wake_r in readable:
                    os.read(self._wake_r, 64)
                if self._reload.is_set():
                    self._reload.clear()
                    self.service.reload()
                if listener in readable and not self._stop.is_set():
                    conn, _ = self._listener.accept()
                    self._start(conn)
        finally:
            self._shutdown()

    def _reconcile(self) -> int:
        try:
            return self.service.crypto.reconcile()
        except PsaError as exc:
            log.warning("RSE not reachable at start (%s); will settle pending keys later", exc)
            return 0

    def _start(self, conn: socket.socket) -> None:
        if not self._slots.acquire(blocking=False):
            log.error("too many connections; refusing one")
            conn.close()
            return
        self._workers.submit(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self.service.config.listener_timeout_ms / 1000)
            response = self.service.serve_request(socket_reader(conn), peer_of(conn))
            conn.settimeout(5)
            conn.sendall(response)
        except (EmptyConnection, OSError):
            pass
        finally:
            conn.close()
            self._slots.release()

    def _shutdown(self) -> None:
        self._listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._workers.shutdown(wait=True)  # in-flight requests finish
        self.service.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        log.warning("Parsec service stopped")


def serve(
    config_path: Path | None, rse_socket: Path, store_dir: Path, socket_path: Path | None
) -> int:
    config = config_module.load(config_path)
    if socket_path is not None:
        config = replace(config, socket_path=socket_path)
    configure_logging(config)
    if os.geteuid() == 0 and not config.allow_root:
        raise config_module.ConfigError(
            "refusing to run as root: set [core_settings] allow_root = true in the configuration"
        )
    service = ParsecService(config, rse_socket, store_dir, config_path)
    server = ParsecServer(service)

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        server.request_stop()

    def on_hup(signum: int, _frame: FrameType | None) -> None:
        server.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    server.serve_forever()
    return 0
