"""RSE comms "embed" protocol: the messages the SE proxy exchanges with the RSE over the MHU.

A call carries a PSA client call (``psa_call(handle, type, in_vec, out_vec)``) with the
in-vectors embedded in the message; the reply carries the return value and the out-vectors.
Both travel on a byte stream framed by a little-endian u32 length, as the MHU transport does.

Layout (all little-endian, packed):

- header ``{u8 protocol_ver; u8 seq_num; u16 client_id}``
- call   ``{i32 handle; u32 ctrl_param; u16 io_size[4]; u8 payload[]}``
- reply  ``{i32 return_val; u16 out_size[4]; u8 payload[]}``

``ctrl_param`` holds the call type in bits 0-15, out_len in bits 16-18 and in_len in bits 24-26;
``io_size`` lists the in-vector sizes followed by the out-vector sizes (capacities).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Protocol

PROTOCOL_EMBED = 0
PROTOCOL_POINTER_ACCESS = 1
PSA_IPC_CALL = 0
PSA_MAX_IOVEC = 4

HEADER = struct.Struct("<BBH")
CALL_FIXED = struct.Struct("<iI4H")
REPLY_FIXED = struct.Struct("<i4H")
LENGTH_PREFIX = struct.Struct("<I")

#: Largest embed payload the model accepts by default (the Corstone-1000 RSE comms limit).
DEFAULT_MAX_PAYLOAD = 0x43C0


class MessageError(ValueError):
    """A message that cannot be decoded; the server answers it with an error reply."""


@dataclass(frozen=True)
class Header:
    protocol_ver: int = PROTOCOL_EMBED
    seq_num: int = 0
    client_id: int = 0

    def encode(self) -> bytes:
        return HEADER.pack(self.protocol_ver, self.seq_num & 0xFF, self.client_id & 0xFFFF)


@dataclass(frozen=True)
class Call:
    """A ``psa_call`` as carried by the embed protocol."""

    header: Header
    handle: int
    call_type: int
    in_vecs: tuple[bytes, ...]
    out_sizes: tuple[int, ...]

    @property
    def ctrl_param(self) -> int:
        return make_ctrl_param(self.call_type, len(self.in_vecs), len(self.out_sizes))


@dataclass(frozen=True)
class Reply:
    header: Header
    return_val: int
    out_vecs: tuple[bytes, ...] = field(default_factory=tuple)


def make_ctrl_param(call_type: int, in_len: int, out_len: int) -> int:
    return (call_type & 0xFFFF) | ((out_len & 0x7) << 16) | ((in_len & 0x7) << 24)


def split_ctrl_param(ctrl_param: int) -> tuple[int, int, int]:
    """``(type, in_len, out_len)``; the type is the signed 16-bit PSA call type."""
    call_type = ctrl_param & 0xFFFF
    if call_type >= 0x8000:
        call_type -= 0x10000
    return call_type, (ctrl_param >> 24) & 0x7, (ctrl_param >> 16) & 0x7


def encode_call(call: Call) -> bytes:
    if len(call.in_vecs) + len(call.out_sizes) > PSA_MAX_IOVEC:
        raise MessageError("more than 4 vectors in one call")
    sizes = [len(v) for v in call.in_vecs] + list(call.out_sizes)
    if any(s > 0xFFFF for s in sizes):
        raise MessageError("vector larger than 65535 bytes")
    sizes += [0] * (PSA_MAX_IOVEC - len(sizes))
    fixed = CALL_FIXED.pack(call.handle, call.ctrl_param, *sizes)
    return call.header.encode() + fixed + b"".join(call.in_vecs)


def decode_header(message: bytes) -> Header:
    if len(message) < HEADER.size:
        raise MessageError(f"message of {len(message)} bytes has no complete header")
    return Header(*HEADER.unpack_from(message))


def decode_call(message: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Call:
    """Decode an embed call, checking every length against what the message really holds."""
    header = decode_header(message)
    if header.protocol_ver != PROTOCOL_EMBED:
        raise MessageError(f"protocol_ver {header.protocol_ver} is not the embed protocol")
    body = message[HEADER.size :]
    if len(body) < CALL_FIXED.size:
        raise MessageError(f"truncated call: {len(body)} bytes after the header")
    handle, ctrl_param, *io_size = CALL_FIXED.unpack_from(body)
    call_type, in_len, out_len = split_ctrl_param(ctrl_param)
    if in_len + out_len > PSA_MAX_IOVEC:
        raise MessageError(f"in_len {in_len} + out_len {out_len} exceeds {PSA_MAX_IOVEC}")
    payload = body[CALL_FIXED.size :]
    if len(payload) > max_payload:
        raise MessageError(f"payload of {len(payload)} bytes exceeds the limit {max_payload}")
    in_sizes = io_size[:in_len]
    if sum(in_sizes) != len(payload):
        raise MessageError(
            f"in-vector sizes {in_sizes} add up to {sum(in_sizes)}, payload has {len(payload)}"
        )
    in_vecs = []
    offset = 0
    for size in in_sizes:
        in_vecs.append(payload[offset : offset + size])
        offset += size
    out_sizes = tuple(io_size[in_len : in_len + out_len])
    return Call(header, handle, call_type, tuple(in_vecs), out_sizes)


def encode_reply(reply: Reply) -> bytes:
    if len(reply.out_vecs) > PSA_MAX_IOVEC:
        raise MessageError("more than 4 out-vectors in one reply")
    sizes = [len(v) for v in reply.out_vecs] + [0] * (PSA_MAX_IOVEC - len(reply.out_vecs))
    fixed = REPLY_FIXED.pack(reply.return_val, *sizes)
    return reply.header.encode() + fixed + b"".join(reply.out_vecs)


def decode_reply(message: bytes, out_len: int) -> Reply:
    """Decode a reply to a call that had ``out_len`` out-vectors."""
    header = decode_header(message)
    body = message[HEADER.size :]
    if len(body) < REPLY_FIXED.size:
        raise MessageError(f"truncated reply: {len(body)} bytes after the header")
    return_val, *out_size = REPLY_FIXED.unpack_from(body)
    payload = body[REPLY_FIXED.size :]
    sizes = out_size[:out_len]
    if sum(sizes) != len(payload):
        raise MessageError(f"reply out sizes {sizes} do not match its {len(payload)}-byte payload")
    outs = []
    offset = 0
    for size in sizes:
        outs.append(payload[offset : offset + size])
        offset += size
    return Reply(header, return_val, tuple(outs))


# --- framing ----------------------------------------------------------------------------------


class Readable(Protocol):
    def recv(self, size: int, /) -> bytes: ...


def frame(message: bytes) -> bytes:
    return LENGTH_PREFIX.pack(len(message)) + message


class FrameReader:
    """Reads a framed byte stream in large chunks: usually one ``recv`` per frame, not two.

    Bytes past the frame being read stay in the buffer for the next one, so a reader must live
    as long as its stream (and be dropped with it).
    """

    CHUNK = 65536

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def _fill(self) -> bool:
        """One ``recv`` into the buffer; False at the end of the stream."""
        chunk = self._stream.recv(self.CHUNK)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def read_length(self) -> int | None:
        """The next frame's length prefix; None on a clean end of stream before it."""
        if not self._buffer and not self._fill():
            return None
        (length,) = LENGTH_PREFIX.unpack(self.read_exact(LENGTH_PREFIX.size))
        return int(length)

    def read_exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes; ``ConnectionError`` if the stream ends first (mid-frame)."""
        while len(self._buffer) < size:
            if not self._fill():
                raise ConnectionError(
                    f"stream ended {len(self._buffer)} bytes into a {size}-byte read"
                )
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def discard(self, size: int) -> None:
        """Consume ``size`` bytes without keeping them, so an oversized frame cannot exhaust
        memory (the buffer never holds more than one chunk beyond what is consumed)."""
        remaining = size
        while remaining:
            if not self._buffer and not self._fill():
                raise ConnectionError("stream ended inside an oversized frame")
            taken = min(remaining, len(self._buffer))
            del self._buffer[:taken]
            remaining -= taken
