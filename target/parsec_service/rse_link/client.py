"""A Python client for the RSE crypto service: what the SE proxy does, over a stream socket.

The tests drive the model through it, and the project's Parsec service uses it as the backend
of its Trusted Service provider. One client is one MHU link: calls on it are serialised (one
message in flight, matched by sequence number), and the connection is made lazily and remade
after a failure, so a restarted RSE model is picked up by the next call.
"""

from __future__ import annotations

import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ..psa import PsaError, Status
from . import comms
from .comms import Call, Header
from .tfm_crypto import CRYPTO_HANDLE, KEY_ATTRIBUTES, KEY_ID, FunctionId, KeyAttributes, PackIovec


class RseUnavailable(PsaError):
    """The RSE could not be reached or stopped answering: PSA_ERROR_COMMUNICATION_FAILURE."""

    def __init__(self, detail: str) -> None:
        super().__init__(Status.COMMUNICATION_FAILURE, detail)


class Link(Protocol):
    """A byte stream to the RSE: a Unix socket, or a serial port such as virtio-serial."""

    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class SerialLink:
    """A character device (``/dev/virtio-ports/rse`` in a QEMU machine) as a Link.

    The port stays open while the RSE on the other side comes and goes, so reads and writes
    wait with a timeout, and bytes left over from an earlier user are drained on opening.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.timeout = timeout
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        while select.select([self.fd], [], [], 0)[0]:
            try:
                if not os.read(self.fd, 65536):
                    break
            except BlockingIOError:
                break

    def sendall(self, data: bytes, /) -> None:
        view = memoryview(data)
        while view:
            if not select.select([], [self.fd], [], self.timeout)[1]:
                raise TimeoutError("the RSE port does not take data")
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                continue
            view = view[written:]

    def recv(self, size: int, /) -> bytes:
        if not select.select([self.fd], [], [], self.timeout)[0]:
            raise TimeoutError("no answer on the RSE port")
        try:
            return os.read(self.fd, size)
        except BlockingIOError:
            return self.recv(size)

    def close(self) -> None:
        os.close(self.fd)


def _kernel_timeouts(sock: socket.socket, timeout: float) -> None:
    """Make a connected socket blocking, with ``timeout`` enforced by the kernel
    (SO_RCVTIMEO, SO_SNDTIMEO): a read or write that waits longer fails with EAGAIN, as
    Python's own timeout would, but without a poll() before every call. Where the kernel
    refuses the value (a ``struct timeval`` of another size), Python's timeout stays."""
    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1e6))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    except OSError:
        return
    sock.settimeout(None)


def is_serial_port(path: str | Path) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


class RseClient:
    def __init__(self, socket_path: str | Path, client_id: int = 0, timeout: float = 5.0) -> None:
        self.socket_path = str(socket_path)
        self.client_id = client_id
        self.timeout = timeout
        self._sock: Link | None = None
        self._frames: comms.FrameReader | None = None
        self._seq = 0
        self._lock = threading.Lock()

    # --- connection ---------------------------------------------------------------------------

    def _connect(self) -> Link:
        if self._sock is None and is_serial_port(self.socket_path):
            try:
                self._sock = SerialLink(self.socket_path, self.timeout)
            except OSError as exc:
                raise RseUnavailable(f"cannot open the RSE port {self.socket_path}: {exc}") from exc
            self._frames = comms.FrameReader(self._sock)
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
                _kernel_timeouts(sock, self.timeout)
            except OSError as exc:
                sock.close()
                raise RseUnavailable(f"cannot reach the RSE at {self.socket_path}: {exc}") from exc
            self._sock = sock
            self._frames = comms.FrameReader(sock)
        return self._sock

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._frames = None

    def __enter__(self) -> RseClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the model accepts connections (it binds before it listens)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._lock:
                    self._connect()
                return
            except RseUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    # --- raw messages -------------------------------------------------------------------------

    def exchange(self, message: bytes) -> bytes:
        """Send one framed message and return the reply message, unparsed."""
        with self._lock:
            return self._exchange(message)

    def _exchange(self, message: bytes) -> bytes:
        data = comms.frame(message)
        reused = self._sock is not None
        sock = self._connect()
        try:
            sock.sendall(data)
        except OSError as exc:
            self._drop()
            if not reused:
                raise RseUnavailable(f"RSE link failed: {exc}") from exc
            # The link went stale while idle (the RSE restarted). Nothing was delivered, so
            # sending again on a fresh link cannot run the call twice.
            sock = self._connect()
            try:
                sock.sendall(data)
            except OSError as again:
                self._drop()
                raise RseUnavailable(f"RSE link failed: {again}") from again
        return self._receive()

    def _receive(self) -> bytes:
        frames = self._frames
        assert frames is not None
        try:
            length = frames.read_length()
            if length is None:
                raise ConnectionError("the RSE closed the link")
            if length > 1 << 20:
                raise ConnectionError(f"a reply of {length} bytes: the link is out of step")
            return frames.read_exact(length)
        except (BlockingIOError, TimeoutError) as exc:  # SO_RCVTIMEO, or the timeout, ran out
            self._drop()
            raise RseUnavailable(f"RSE link failed: no reply within {self.timeout:g} s") from exc
        except (OSError, ConnectionError) as exc:
            self._drop()
            raise RseUnavailable(f"RSE link failed: {exc}") from exc

    def call(
        self,
        handle: int,
        in_vecs: Sequence[bytes],
        out_sizes: Sequence[int] = (),
        call_type: int = comms.PSA_IPC_CALL,
    ) -> tuple[int, tuple[bytes, ...]]:
        """``psa_call``: returns the service's return value and the out-vectors it filled."""
        with self._lock:
            self._seq = (self._seq + 1) & 0xFF
            header = Header(comms.PROTOCOL_EMBED, self._seq, self.client_id)
            message = comms.encode_call(
                Call(header, handle, call_type, tuple(in_vecs), tuple(out_sizes))
            )
            raw = self._exchange(message)
            for _ in range(16):
                try:
                    reply = comms.decode_reply(raw, len(out_sizes))
                except comms.MessageError:
                    reply = None
                if reply is not None and reply.header.seq_num == header.seq_num:
                    return reply.return_val, reply.out_vecs
                # A reply to an earlier call whose caller gave up (a timeout, a restart of
                # the service on a serial port that stayed open): skip it.
                raw = self._receive()
            self._drop()
            raise RseUnavailable(f"no reply to seq {header.seq_num} from the RSE")

    # --- the crypto service -------------------------------------------------------------------

    def crypto(
        self, pack: PackIovec, extra_in: Sequence[bytes] = (), out_sizes: Sequence[int] = ()
    ) -> tuple[bytes, ...]:
        status, outs = self.call(CRYPTO_HANDLE, [pack.encode(), *extra_in], out_sizes)
        if status != Status.SUCCESS:
            raise PsaError(status)
        return outs

    def generate_random(self, size: int) -> bytes:
        return self.crypto(PackIovec(FunctionId.GENERATE_RANDOM), out_sizes=[size])[0]

    def import_key(self, attributes: KeyAttributes, data: bytes) -> int:
        outs = self.crypto(
            PackIovec(FunctionId.IMPORT_KEY), [attributes.encode(), data], [KEY_ID.size]
        )
        return int(KEY_ID.unpack(outs[0])[0])

    def generate_key(self, attributes: KeyAttributes) -> int:
        outs = self.crypto(PackIovec(FunctionId.GENERATE_KEY), [attributes.encode()], [KEY_ID.size])
        return int(KEY_ID.unpack(outs[0])[0])

    def get_key_attributes(self, key_id: int) -> KeyAttributes:
        outs = self.crypto(
            PackIovec(FunctionId.GET_KEY_ATTRIBUTES, key_id), out_sizes=[KEY_ATTRIBUTES.size]
        )
        return KeyAttributes.decode(outs[0])

    def destroy_key(self, key_id: int) -> None:
        self.crypto(PackIovec(FunctionId.DESTROY_KEY, key_id))

    def purge_key(self, key_id: int) -> None:
        self.crypto(PackIovec(FunctionId.PURGE_KEY, key_id))

    def export_public_key(self, key_id: int, size: int = 1024) -> bytes:
        return self.crypto(PackIovec(FunctionId.EXPORT_PUBLIC_KEY, key_id), out_sizes=[size])[0]

    def export_key(self, key_id: int, size: int = 4096) -> bytes:
        return self.crypto(PackIovec(FunctionId.EXPORT_KEY, key_id), out_sizes=[size])[0]

    def sign_hash(self, key_id: int, alg: int, hash_value: bytes, size: int = 512) -> bytes:
        return self.crypto(PackIovec(FunctionId.SIGN_HASH, key_id, alg), [hash_value], [size])[0]

    def verify_hash(self, key_id: int, alg: int, hash_value: bytes, signature: bytes) -> None:
        self.crypto(PackIovec(FunctionId.VERIFY_HASH, key_id, alg), [hash_value, signature])

    def hash_compute(self, hash_alg: int, message: bytes) -> bytes:
        return self.crypto(PackIovec(FunctionId.HASH_COMPUTE, alg=hash_alg), [message], [64])[0]

    def hash_compare(self, hash_alg: int, message: bytes, expected: bytes) -> None:
        self.crypto(PackIovec(FunctionId.HASH_COMPARE, alg=hash_alg), [message, expected])

    def sign_message(self, key_id: int, alg: int, message: bytes, size: int = 512) -> bytes:
        return self.crypto(PackIovec(FunctionId.SIGN_MESSAGE, key_id, alg), [message], [size])[0]

    def verify_message(self, key_id: int, alg: int, message: bytes, signature: bytes) -> None:
        self.crypto(PackIovec(FunctionId.VERIFY_MESSAGE, key_id, alg), [message, signature])
