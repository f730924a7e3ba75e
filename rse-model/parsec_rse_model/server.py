"""The RSE model as a process: a stream listener that answers RSE comms embed messages.

One connection is one MHU link: a Parsec provider on the host, or a QEMU machine whose
virtio-serial port is backed by a chardev socket connected here. Every connection gets a thread;
the key store is shared and locked, so a slow client never blocks the others. The number of open
connections is bounded (``--max-connections``): one over the limit is closed as soon as it is
accepted, and the console says so, so that a flood of connections cannot exhaust the process.

Whatever arrives, the model answers or closes cleanly: an undecodable message gets an error
reply (``PSA_ERROR_INVALID_ARGUMENT``) echoing whatever header could be read, an oversized frame
is drained and answered the same way, and the session goes on. Only an end of stream in the
middle of a frame closes the connection, since no reply could be matched to it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from parsec_service import psa
from parsec_service.daemon import UnixDaemon, serve_as_program
from parsec_service.directory_lock import DirectoryInUse, DirectoryLock
from parsec_service.psa import Status
from parsec_service.rse_link import comms
from parsec_service.rse_link.comms import Call, Header, MessageError, Reply
from parsec_service.rse_link.tfm_crypto import CRYPTO_HANDLE

from .console import RseLog
from .crypto_service import CryptoService
from .keystore import DEFAULT_MAX_PERSISTENT, DEFAULT_SLOTS, KeyStore, StoreError

DEFAULT_MAX_CONNECTIONS = 64
#: How long a stop waits for each link's thread to finish.
LINK_JOIN_S = 5.0


@dataclass(frozen=True)
class ServerConfig:
    socket_path: Path
    store_dir: Path
    console_log: Path | None = None
    events_log: Path | None = None
    slots: int = DEFAULT_SLOTS
    max_payload: int = comms.DEFAULT_MAX_PAYLOAD
    max_keys: int = DEFAULT_MAX_PERSISTENT
    max_connections: int = DEFAULT_MAX_CONNECTIONS


class RseModel:
    """Message handling, independent of sockets, so that tests can drive it directly."""

    def __init__(
        self, store: KeyStore, log: RseLog, max_payload: int = comms.DEFAULT_MAX_PAYLOAD
    ) -> None:
        self.store = store
        self.log = log
        self.max_payload = max_payload
        self.crypto = CryptoService(store)

    @property
    def max_message(self) -> int:
        return comms.HEADER.size + comms.CALL_FIXED.size + self.max_payload

    def handle_message(self, message: bytes) -> bytes:
        """Answer one message; every input yields a reply."""
        lines: list[str] = []
        try:
            return self._handle(message, lines)
        finally:
            self.log.console_lines(lines)

    def _handle(self, message: bytes, lines: list[str]) -> bytes:
        try:
            call = comms.decode_call(message, self.max_payload)
            if sum(call.out_sizes) > self.max_payload:
                raise MessageError(
                    f"out-vectors of {sum(call.out_sizes)} bytes exceed the reply payload"
                )
        except MessageError as exc:
            return self.reject(message[: comms.HEADER.size], str(exc), lines)
        self._log_received(call, lines)
        started = time.perf_counter()
        status, outs = self._dispatch(call, started, lines)
        reply = Reply(call.header, status, tuple(outs))
        lines.append(
            f"[RSE-COMMS] Sending reply: seq_num={call.header.seq_num} return_val={status}"
        )
        return comms.encode_reply(reply)

    def reject(self, header_bytes: bytes, reason: str, lines: list[str] | None = None) -> bytes:
        """An error reply to a message that could not be decoded, echoing its header if any."""
        if lines is None:
            lines = []
            try:
                return self.reject(header_bytes, reason, lines)
            finally:
                self.log.console_lines(lines)
        try:
            header = comms.decode_header(header_bytes)
        except MessageError:
            header = Header()
        if header.protocol_ver != comms.PROTOCOL_EMBED:
            status = Status.NOT_SUPPORTED
            header = Header(comms.PROTOCOL_EMBED, header.seq_num, header.client_id)
        else:
            status = Status.INVALID_ARGUMENT
        lines.append(f"[RSE-COMMS] Invalid message: {reason}")
        self.log.event(
            {
                "kind": "invalid_message",
                "detail": reason,
                "seq_num": header.seq_num,
                "client_id": header.client_id,
                "status": psa.status_name(status),
                "status_code": int(status),
            }
        )
        lines.append(
            f"[RSE-COMMS] Sending reply: seq_num={header.seq_num} return_val={int(status)}"
        )
        return comms.encode_reply(Reply(header, status))

    def _log_received(self, call: Call, lines: list[str]) -> None:
        h = call.header
        lines.append(
            f"[RSE-COMMS] Received message: protocol_ver={h.protocol_ver} seq_num={h.seq_num} "
            f"client_id=0x{h.client_id:04x} handle=0x{call.handle & 0xFFFFFFFF:08x} "
            f"type={call.call_type} in_len={len(call.in_vecs)} out_len={len(call.out_sizes)}"
        )
        sizes = [f"in_vec[{i}].len={len(v)}" for i, v in enumerate(call.in_vecs)]
        sizes += [f"out_vec[{i}].len={n}" for i, n in enumerate(call.out_sizes)]
        if sizes:
            lines.append("[RSE-COMMS]   " + " ".join(sizes))

    def _dispatch(self, call: Call, started: float, lines: list[str]) -> tuple[int, list[bytes]]:
        if call.handle != CRYPTO_HANDLE:
            lines.append("[RSE-COMMS] Call not permitted")
            return Status.NOT_PERMITTED, []
        if call.call_type != comms.PSA_IPC_CALL:
            lines.append(f"[Crypto] Unsupported call type {call.call_type}")
            return Status.PROGRAMMER_ERROR, []
        status, outs, record = self.crypto.call(call.header.client_id, call.in_vecs, call.out_sizes)
        duration_us = int((time.perf_counter() - started) * 1e6)
        if record is None:
            lines.append("[Crypto] Malformed call: in_vec[0] is not a crypto pack iovec")
            return status, outs
        lines.append(record.console_line())
        event = {"kind": "call", "seq_num": call.header.seq_num, "duration_us": duration_us}
        self.log.event({**event, **record.event()})
        return status, outs


class RseServer(UnixDaemon):
    """The model's daemon: the project's daemon skeleton with a thread per connection.

    Each connection is a persistent link (an MHU between a client and the RSE), served by its
    own thread with blocking reads, so the loop only accepts. A stop shuts every link down and
    waits for its thread (at most ``LINK_JOIN_S`` each).
    """

    def __init__(self, config: ServerConfig) -> None:
        if config.max_connections < 1:
            raise ValueError("the connection limit must be at least 1")
        self.config = config
        self.log = RseLog(config.console_log, config.events_log)
        try:
            config.store_dir.mkdir(parents=True, exist_ok=True)
            self._store_lock = DirectoryLock(config.store_dir, "RSE model")
        except (DirectoryInUse, OSError) as exc:
            self.log.console(f"[RSE] Cannot open the key store: {exc}")
            self.log.close()
            raise
        try:
            store = KeyStore(
                config.store_dir,
                slots=config.slots,
                max_persistent=config.max_keys,
                warn=self.log.console,
            )
        except (StoreError, ValueError, OSError) as exc:
            self.log.console(f"[RSE] Cannot open the key store: {exc}")
            self.log.close()
            self._store_lock.release()
            raise
        self.model = RseModel(store, self.log, config.max_payload)
        self._links: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        try:
            super().__init__(config.socket_path, "RSE model", 16)
        except BaseException:
            self.log.close()
            self._store_lock.release()
            raise

    # --- the skeleton's hooks -----------------------------------------------------------------

    def on_start(self) -> None:
        store = self.model.store
        self.log.console(
            f"[RSE] Crypto service model ready: handle=0x{CRYPTO_HANDLE:08x} "
            f"slots={store.slot_count} persistent_keys={store.persistent_count()} "
            f"max_keys={store.max_persistent} max_connections={self.config.max_connections} "
            f"socket={self.config.socket_path}"
        )

    def on_accept(self, sock: socket.socket) -> None:
        limit = self.config.max_connections
        if self.limits.admit(None, limit) is not None:
            sock.close()
            self.log.console(
                f"[RSE-COMMS] Connection refused: {limit} links already open (--max-connections)"
            )
            self.log.event({"kind": "connection_refused", "max_connections": limit})
            return
        thread = threading.Thread(target=self._serve_connection, args=(sock,), daemon=True)
        with self._lock:
            self._links[sock] = thread
        try:
            thread.start()
        except RuntimeError as exc:  # the system refuses another thread
            self._forget(sock)
            self.log.console(f"[RSE-COMMS] Connection dropped: {exc}")

    def accept_failed(self, error: OSError) -> None:
        self.log.console(f"[RSE-COMMS] Cannot accept a connection: {error}")

    def on_stop(self) -> None:
        with self._lock:
            links = list(self._links.items())
        for sock, _ in links:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in links:
            thread.join(timeout=LINK_JOIN_S)
        dropped = self.model.store.volatile_in_use()
        self.log.console(f"[RSE] Stopped: {dropped} volatile keys dropped")
        self.log.close()
        self._store_lock.release()

    # --- the links ----------------------------------------------------------------------------

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._links.pop(sock, None)
        sock.close()
        self.limits.release(None)

    def _serve_connection(self, conn: socket.socket) -> None:
        frames = comms.FrameReader(conn)
        try:
            while not self.stopping:
                length = frames.read_length()
                if length is None:
                    break
                if length > self.model.max_message:
                    head = frames.read_exact(min(length, comms.HEADER.size))
                    frames.discard(length - len(head))
                    reply = self.model.reject(
                        head, f"message of {length} bytes exceeds {self.model.max_message}"
                    )
                else:
                    reply = self._answer(frames.read_exact(length))
                conn.sendall(comms.frame(reply))
        except OSError:
            pass  # the peer went away mid-frame, or the server is stopping
        finally:
            self._forget(conn)

    def _answer(self, message: bytes) -> bytes:
        try:
            return self.model.handle_message(message)
        except Exception as exc:  # noqa: BLE001 - the model must answer, never die
            self.log.console(f"[RSE-COMMS] Internal error: {exc!r}")
            header = message[: comms.HEADER.size]
            return self.model.reject(header, "internal error")


def serve(config: ServerConfig) -> int:
    serve_as_program(lambda: RseServer(config))
    return 0
