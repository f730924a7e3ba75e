"""Parsec wire protocol 1.0: the fixed 36-byte header and the request/response framing.

A request is header + body + authentication bytes; a response is header + body. One request
travels per connection. The header is little-endian and packed::

    u32 magic (0x5EC0A710)  u16 hdr_size (30)  u8 version_maj (1)  u8 version_min (0)
    u16 flags  u8 provider  u64 session  u8 content_type  u8 accept_type  u8 auth_type
    u32 body_len  u16 auth_len  u32 opcode  u16 status  u8 reserved1  u8 reserved2
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from .constants import ResponseStatus

MAGIC = 0x5EC0A710
HDR_SIZE = 30
VERSION = (1, 0)
CONTENT_TYPE_PROTOBUF = 0
HEADER = struct.Struct("<IHBBHBQBBBIHIHBB")
assert HEADER.size == 36


@dataclass(frozen=True)
class Header:
    provider: int = 0
    session: int = 0
    content_type: int = CONTENT_TYPE_PROTOBUF
    accept_type: int = CONTENT_TYPE_PROTOBUF
    auth_type: int = 0
    body_len: int = 0
    auth_len: int = 0
    opcode: int = 0
    status: int = 0
    flags: int = 0
    magic: int = MAGIC
    hdr_size: int = HDR_SIZE
    version_maj: int = VERSION[0]
    version_min: int = VERSION[1]
    reserved1: int = 0
    reserved2: int = 0

    def encode(self) -> bytes:
        return HEADER.pack(
            self.magic,
            self.hdr_size,
            self.version_maj,
            self.version_min,
            self.flags,
            self.provider,
            self.session,
            self.content_type,
            self.accept_type,
            self.auth_type,
            self.body_len,
            self.auth_len,
            self.opcode,
            self.status,
            self.reserved1,
            self.reserved2,
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        (
            magic,
            hdr_size,
            version_maj,
            version_min,
            flags,
            provider,
            session,
            content_type,
            accept_type,
            auth_type,
            body_len,
            auth_len,
            opcode,
            status,
            reserved1,
            reserved2,
        ) = HEADER.unpack(data)
        return cls(
            provider=provider,
            session=session,
            content_type=content_type,
            accept_type=accept_type,
            auth_type=auth_type,
            body_len=body_len,
            auth_len=auth_len,
            opcode=opcode,
            status=status,
            flags=flags,
            magic=magic,
            hdr_size=hdr_size,
            version_maj=version_maj,
            version_min=version_min,
            reserved1=reserved1,
            reserved2=reserved2,
        )


class WireError(Exception):
    """A request rejected before its operation ran; ``status`` is what the response says."""

    def __init__(self, status: ResponseStatus, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status.label}: {detail}" if detail else status.label)


def check_fixed_fields(header: Header, body_len_limit: int) -> None:
    """Header checks in upstream's order, up to the body size (steps 1-5)."""
    if header.magic != MAGIC:
        raise WireError(ResponseStatus.INVALID_HEADER, f"magic 0x{header.magic:08x}")
    if header.hdr_size != HDR_SIZE:
        raise WireError(ResponseStatus.INVALID_HEADER, f"hdr_size {header.hdr_size}")
    if (header.version_maj, header.version_min) != VERSION:
        raise WireError(
            ResponseStatus.WIRE_PROTOCOL_VERSION_NOT_SUPPORTED,
            f"version {header.version_maj}.{header.version_min}",
        )
    if header.reserved1 or header.reserved2:
        raise WireError(ResponseStatus.INVALID_HEADER, "reserved bytes are not zero")
    if header.body_len > body_len_limit:
        raise WireError(
            ResponseStatus.BODY_SIZE_EXCEEDS_LIMIT,
            f"body of {header.body_len} bytes, limit {body_len_limit}",
        )


def encode_request(header: Header, body: bytes, auth: bytes) -> bytes:
    header = replace(header, body_len=len(body), auth_len=len(auth))
    return header.encode() + body + auth


def response_header(request: Header, status: ResponseStatus, body_len: int) -> Header:
    """A response to ``request``: provider, session and opcode copied, no authentication."""
    return Header(
        provider=request.provider,
        session=request.session,
        content_type=request.accept_type,
        accept_type=0,
        auth_type=0,
        body_len=body_len,
        auth_len=0,
        opcode=request.opcode,
        status=int(status),
    )


#: The header of an error response to a request that failed the header stage.
def header_stage_error(status: ResponseStatus) -> Header:
    return Header(provider=0, session=0, opcode=1, status=int(status))
