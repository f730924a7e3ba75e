"""Parsec wire protocol 1.0 as raw bytes: golden encodings and every validation status."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from parsec_demo.services import parsec_config_text
from parsec_service import contracts as pb
from parsec_service.client import SECP_R1, SHA_256, Auth, key_attributes, sign_alg
from parsec_service.constants import Opcode, ResponseStatus
from parsec_service.wire import HEADER, Header, encode_request
from support.running import RunningParsec

PING_REQUEST = bytes.fromhex(
    "10a7c05e1e00010000000000000000000000000000000000000000000100000000000000"
)


def raw_exchange(
    parsec: RunningParsec, data: bytes, close_write: bool = False
) -> tuple[Header, bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(parsec.socket_path))
        sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        response = b""
        while (
            len(response) < HEADER.size
            or len(response) < HEADER.size + Header.decode(response[:36]).body_len
        ):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    header = Header.decode(response[:36])
    return header, response[36:]


def request(opcode: int, body: bytes = b"", auth: Auth | None = None, **fields: int) -> bytes:
    auth = auth or Auth.none()
    header = replace(Header(opcode=opcode, auth_type=auth.auth_type), **fields)
    return encode_request(header, body, auth.data)


def test_ping_golden_bytes(parsec: RunningParsec) -> None:
    assert request(Opcode.PING) == PING_REQUEST
    header, body = raw_exchange(parsec, PING_REQUEST)
    raw = header.encode()
    assert raw[:4] == bytes.fromhex("10a7c05e") and raw[4:6] == bytes.fromhex("1e00")
    assert (header.status, header.opcode, header.provider, header.body_len) == (0, 1, 0, 2)
    assert (header.auth_type, header.auth_len) == (0, 0)
    assert body == bytes.fromhex("0801")  # wire_protocol_version_maj = 1; min 0 is omitted


def test_import_key_golden_bytes() -> None:
    """The encoding of PsaImportKey, checked by hand against the contracts' field numbers."""
    attributes = key_attributes(
        "ecc_public_key", 256, sign_alg("ecdsa", SHA_256), curve_family=SECP_R1, verify_hash=True
    )
    operation = pb.psa_import_key.Operation(
        key_name="k", attributes=attributes, data=b"\x04\xaa\xbb"
    )
    body = operation.SerializeToString()
    expected_body = bytes.fromhex(
        "0a016b"  # 1 key_name "k"
        "1219"  # 2 attributes, 25 bytes:
        "0a04"
        "6202"
        "0802"  # 1 key_type { 12 ecc_public_key { 1 curve_family SECP_R1(2) } }
        "108002"  # 2 key_bits 256
        "1a0e"
        "0a024801"  # 3 key_policy { 1 usage { 9 verify_hash true }
        "1208"
        "3206"
        "2204"
        "0a02"
        "1007"  # 2 alg { 6 asym_sig { 4 ecdsa { 1 { 2 SHA_256(7) }}}}}
        "1a0304aabb"  # 3 data
    )
    assert body == expected_body
    wire = request(Opcode.PSA_IMPORT_KEY, body, Auth.peer(0), provider=4, session=0x1122)
    assert wire == (
        bytes.fromhex("10a7c05e1e00010000000422110000000000000000032300000004000600000000000000")
        + expected_body
        + b"\0\0\0\0"
    )


def assert_header_stage(header: Header, status: ResponseStatus) -> None:
    assert header.status == status, f"got {header.status}, expected {status.label}"
    assert (header.provider, header.session, header.opcode) == (0, 0, Opcode.PING)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"magic": 0x5EC0A711}, ResponseStatus.INVALID_HEADER),
        ({"hdr_size": 31}, ResponseStatus.INVALID_HEADER),
        ({"version_maj": 2}, ResponseStatus.WIRE_PROTOCOL_VERSION_NOT_SUPPORTED),
        ({"version_min": 1}, ResponseStatus.WIRE_PROTOCOL_VERSION_NOT_SUPPORTED),
        ({"reserved1": 1}, ResponseStatus.INVALID_HEADER),
        ({"reserved2": 7}, ResponseStatus.INVALID_HEADER),
        ({"content_type": 1}, ResponseStatus.CONTENT_TYPE_NOT_SUPPORTED),
        ({"accept_type": 2}, ResponseStatus.ACCEPT_TYPE_NOT_SUPPORTED),
        ({"auth_type": 9}, ResponseStatus.AUTHENTICATOR_DOES_NOT_EXIST),
        ({"opcode": 0x99}, ResponseStatus.OPCODE_DOES_NOT_EXIST),
        ({"provider": 9}, ResponseStatus.PROVIDER_DOES_NOT_EXIST),
    ],
)
def test_header_stage_errors(
    parsec: RunningParsec, fields: dict[str, int], status: ResponseStatus
) -> None:
    header, body = raw_exchange(
        parsec, replace(Header(opcode=Opcode.LIST_PROVIDERS, session=77), **fields).encode()
    )
    assert_header_stage(header, status)
    assert body == b""


def test_validation_order_is_upstreams(parsec: RunningParsec) -> None:
    """Several faults at once: the earliest check in upstream's order decides."""
    both = request(Opcode.PING, magic=1, version_maj=2)
    assert raw_exchange(parsec, both)[0].status == ResponseStatus.INVALID_HEADER
    version_and_reserved = request(Opcode.PING, version_maj=2, reserved1=1)
    assert (
        raw_exchange(parsec, version_and_reserved)[0].status
        == ResponseStatus.WIRE_PROTOCOL_VERSION_NOT_SUPPORTED
    )
    content_and_opcode = request(0x99, content_type=1)
    assert (
        raw_exchange(parsec, content_and_opcode)[0].status
        == ResponseStatus.CONTENT_TYPE_NOT_SUPPORTED
    )
    opcode_and_provider = request(0x99, provider=9)
    assert (
        raw_exchange(parsec, opcode_and_provider)[0].status == ResponseStatus.OPCODE_DOES_NOT_EXIST
    )


def test_body_over_the_limit_is_refused_without_reading_it(
    parsec_factory: Callable[..., RunningParsec],
) -> None:
    parsec = parsec_factory(config_text=parsec_config_text(extra_core="body_len_limit = 64"))
    oversized = Header(opcode=Opcode.PING, body_len=65).encode()
    header, _ = raw_exchange(parsec, oversized)  # the 65 bytes are never sent
    assert_header_stage(header, ResponseStatus.BODY_SIZE_EXCEEDS_LIMIT)


def test_short_or_slow_requests_are_connection_errors(parsec: RunningParsec) -> None:
    truncated = request(Opcode.PING, b"\x00" * 10)[:-4]
    header, _ = raw_exchange(parsec, truncated, close_write=True)
    assert_header_stage(header, ResponseStatus.CONNECTION_ERROR)
    started = time.monotonic()
    header, _ = raw_exchange(parsec, truncated)  # keeps the connection open: the timeout fires
    assert_header_stage(header, ResponseStatus.CONNECTION_ERROR)
    assert time.monotonic() - started < 3
    header, _ = raw_exchange(parsec, PING_REQUEST[:20], close_write=True)
    assert_header_stage(header, ResponseStatus.CONNECTION_ERROR)


def direct(name: str) -> Auth:
    return Auth.direct(name)


@pytest.fixture
def direct_parsec(parsec_factory: Callable[..., RunningParsec]) -> RunningParsec:
    return parsec_factory("direct", parsec_config_text(auth_type="Direct", admins=("admin",)))


def expect(parsec: RunningParsec, data: bytes, status: ResponseStatus) -> Header:
    header, _ = raw_exchange(parsec, data)
    assert header.status == status, f"got {header.status}, expected {status.label}"
    return header


def test_post_header_errors_keep_provider_session_and_opcode(direct_parsec: RunningParsec) -> None:
    p = direct_parsec
    uid = Auth.peer()
    header = expect(
        p,
        request(Opcode.LIST_KEYS, auth=uid, session=5),
        ResponseStatus.AUTHENTICATOR_NOT_REGISTERED,
    )
    assert (header.session, header.opcode, header.provider) == (5, Opcode.LIST_KEYS, 0)
    expect(
        p,
        request(Opcode.LIST_KEYS, auth=Auth(direct("x").auth_type, b"")),
        ResponseStatus.AUTHENTICATION_ERROR,
    )
    expect(
        p,
        request(Opcode.LIST_KEYS, auth=Auth(direct("x").auth_type, b"\xff\xfe")),
        ResponseStatus.AUTHENTICATION_ERROR,
    )
    header = expect(
        p,
        request(Opcode.PSA_GENERATE_RANDOM, provider=1, session=9),
        ResponseStatus.PROVIDER_NOT_REGISTERED,
    )
    assert (header.provider, header.session) == (1, 9)
    expect(
        p,
        request(Opcode.LIST_KEYS, auth=direct("a"), provider=4),
        ResponseStatus.PSA_ERROR_NOT_SUPPORTED,
    )
    expect(
        p,
        request(Opcode.PSA_GENERATE_RANDOM, auth=direct("a"), provider=0),
        ResponseStatus.PSA_ERROR_NOT_SUPPORTED,
    )
    expect(p, request(Opcode.LIST_CLIENTS), ResponseStatus.NOT_AUTHENTICATED)
    expect(p, request(Opcode.LIST_CLIENTS, auth=direct("bob")), ResponseStatus.ADMIN_OPERATION)
    expect(p, request(Opcode.LIST_CLIENTS, auth=direct("admin")), ResponseStatus.SUCCESS)
    expect(
        p,
        request(Opcode.PSA_GENERATE_RANDOM, b"\xff\xff\xff", direct("a"), provider=4),
        ResponseStatus.DESERIALIZING_BODY_FAILED,
    )
    no_attributes = pb.psa_import_key.Operation(key_name="k", data=b"x").SerializeToString()
    expect(
        p,
        request(Opcode.PSA_IMPORT_KEY, no_attributes, direct("a"), provider=4),
        ResponseStatus.INVALID_ENCODING,
    )
    expect(
        p,
        request(Opcode.PSA_IMPORT_KEY, no_attributes, provider=4),
        ResponseStatus.INVALID_ENCODING,
    )
    random = pb.psa_generate_random.Operation(size=4).SerializeToString()
    expect(
        p, request(Opcode.PSA_GENERATE_RANDOM, random, provider=4), ResponseStatus.NOT_AUTHENTICATED
    )
    expect(p, request(Opcode.LIST_KEYS), ResponseStatus.NOT_AUTHENTICATED)
    expect(
        p,
        request(Opcode.PSA_AEAD_ENCRYPT, b"", direct("a"), provider=4),
        ResponseStatus.PSA_ERROR_NOT_SUPPORTED,
    )


def test_an_authenticated_ping_is_authenticated(direct_parsec: RunningParsec) -> None:
    expect(
        direct_parsec,
        request(Opcode.PING, auth=Auth(direct("x").auth_type, b"")),
        ResponseStatus.AUTHENTICATION_ERROR,
    )
    expect(direct_parsec, request(Opcode.PING, auth=direct("x")), ResponseStatus.SUCCESS)


def test_peer_credentials_must_match_the_kernel(parsec: RunningParsec) -> None:
    expect(parsec, request(Opcode.LIST_KEYS, auth=Auth.peer()), ResponseStatus.SUCCESS)
    expect(
        parsec,
        request(Opcode.LIST_KEYS, auth=Auth.peer(os.getuid() + 1)),
        ResponseStatus.AUTHENTICATION_ERROR,
    )
    short = Auth(Auth.peer().auth_type, struct.pack("<H", 0))
    expect(parsec, request(Opcode.LIST_KEYS, auth=short), ResponseStatus.AUTHENTICATION_ERROR)
    expect(
        parsec,
        request(Opcode.LIST_KEYS, auth=direct("root")),
        ResponseStatus.AUTHENTICATOR_NOT_REGISTERED,
    )


def test_invalid_encodings_of_attributes(direct_parsec: RunningParsec) -> None:
    def import_with(attributes: object) -> bytes:
        op = pb.psa_import_key.Operation(key_name="k", attributes=attributes, data=b"\x04")
        return request(Opcode.PSA_IMPORT_KEY, op.SerializeToString(), direct("a"), provider=4)

    no_family = key_attributes("ecc_public_key", 256, sign_alg("ecdsa", SHA_256), verify_hash=True)
    expect(direct_parsec, import_with(no_family), ResponseStatus.INVALID_ENCODING)
    no_policy = pb.psa_key_attributes.KeyAttributes(key_bits=256)
    no_policy.key_type.rsa_public_key.SetInParent()
    expect(direct_parsec, import_with(no_policy), ResponseStatus.INVALID_ENCODING)
    no_type = key_attributes("rsa_public_key", 0, sign_alg("ecdsa", SHA_256), verify_hash=True)
    no_type.ClearField("key_type")
    expect(direct_parsec, import_with(no_type), ResponseStatus.INVALID_ENCODING)
    no_hash = key_attributes("rsa_public_key", 0, sign_alg("rsa_pss", SHA_256), verify_hash=True)
    no_hash.key_policy.key_algorithm.asymmetric_signature.rsa_pss.hash_alg.Clear()
    expect(direct_parsec, import_with(no_hash), ResponseStatus.INVALID_ENCODING)
