"""Parsec operations through the service and the RSE model: results, errors, isolation, admin."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from parsec_demo.services import parsec_config_text
from parsec_service.auth import Peer
from parsec_service.client import (
    SECP_R1,
    SHA_256,
    SHA_384,
    Auth,
    ParsecClient,
    ParsecError,
    key_attributes,
    sign_alg,
)
from parsec_service.constants import AuthType, Opcode, ProviderId, ResponseStatus
from parsec_service.wire import HEADER, Header, WireError
from support.keyhelpers import ec_point, rsa_public_der
from support.running import RunningParsec, RunningRse

DIGEST = hashlib.sha256(b"parsec").digest()


def expect(status: ResponseStatus, operation: Callable[[], object]) -> None:
    with pytest.raises(ParsecError) as caught:
        operation()
    assert caught.value.status == status, f"got {caught.value}"


def ecc_pair_attrs(**usage: bool) -> Any:
    usage = usage or {"sign_hash": True, "verify_hash": True}
    return key_attributes(
        "ecc_key_pair", 256, sign_alg("ecdsa", SHA_256), curve_family=SECP_R1, **usage
    )


def rsa_public_attrs(bits: int = 0, alg: Any = None) -> Any:
    return key_attributes(
        "rsa_public_key", bits, alg or sign_alg("rsa_pkcs1v15_sign", SHA_256), verify_hash=True
    )


@pytest.fixture
def direct_parsec(parsec_factory: Callable[..., RunningParsec]) -> RunningParsec:
    return parsec_factory("direct", parsec_config_text(auth_type="Direct", admins=("admin",)))


def test_core_operations(parsec: RunningParsec) -> None:
    client = parsec.client()
    assert client.ping() == (1, 0)
    providers = client.list_providers()
    assert [p.id for p in providers] == [ProviderId.TRUSTED_SERVICE, ProviderId.CORE]
    assert providers[0].uuid == "71129441-508a-4da6-b6e8-7b98a777e4c0"
    assert providers[1].uuid == "47049873-2a43-4845-9d72-831eab668784"
    assert client.list_opcodes(0) == [0x08, 0x09, 0x01, 0x0E, 0x1A]
    assert set(client.list_opcodes(4)) == {0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0D, 0x0F}
    expect(ResponseStatus.PROVIDER_DOES_NOT_EXIST, lambda: client.list_opcodes(1))
    assert [a.id for a in client.list_authenticators()] == [3]
    assert client.auth().auth_type == 3, "the client discovers the configured authenticator"


def test_keys_are_created_used_listed_and_destroyed(parsec: RunningParsec) -> None:
    client = parsec.client()
    client.generate_key("signer", ecc_pair_attrs())
    expect(
        ResponseStatus.PSA_ERROR_ALREADY_EXISTS,
        lambda: client.generate_key("signer", ecc_pair_attrs()),
    )
    point = client.export_public_key("signer")
    signature = client.sign_hash("signer", sign_alg("ecdsa", SHA_256), DIGEST)
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public.verify(der, DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    client.verify_hash("signer", sign_alg("ecdsa", SHA_256), DIGEST, signature)
    expect(
        ResponseStatus.PSA_ERROR_INVALID_SIGNATURE,
        lambda: client.verify_hash("signer", sign_alg("ecdsa", SHA_256), DIGEST, signature[::-1]),
    )
    [key] = client.list_keys()
    assert (key.name, key.provider_id, key.attributes.key_bits) == ("signer", 4, 256)
    assert key.attributes.key_type.ecc_key_pair.curve_family == SECP_R1
    client.destroy_key("signer")
    expect(ResponseStatus.PSA_ERROR_DOES_NOT_EXIST, lambda: client.destroy_key("signer"))
    expect(ResponseStatus.PSA_ERROR_DOES_NOT_EXIST, lambda: client.export_public_key("signer"))
    assert client.list_keys() == []


def test_imported_public_keys_verify_and_report_their_size(parsec: RunningParsec) -> None:
    client = parsec.client()
    key = rsa.generate_private_key(65537, 3072)
    client.import_key("server", rsa_public_attrs(), rsa_public_der(key))
    assert client.list_keys()[0].attributes.key_bits == 3072, "bits are read back from the RSE"
    assert client.export_public_key("server") == rsa_public_der(key)
    signature = key.sign(DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    client.verify_hash("server", sign_alg("rsa_pkcs1v15_sign", SHA_256), DIGEST, signature)
    expect(
        ResponseStatus.PSA_ERROR_NOT_PERMITTED,
        lambda: client.verify_hash("server", sign_alg("rsa_pss", SHA_256), DIGEST, signature),
    )
    expect(
        ResponseStatus.PSA_ERROR_NOT_PERMITTED,
        lambda: client.sign_hash("server", sign_alg("rsa_pkcs1v15_sign", SHA_256), DIGEST),
    )
    expect(
        ResponseStatus.PSA_ERROR_INVALID_ARGUMENT,
        lambda: client.import_key("bad", rsa_public_attrs(bits=2048), rsa_public_der(key)),
    )
    expect(
        ResponseStatus.PSA_ERROR_INVALID_ARGUMENT,
        lambda: client.import_key("bad", rsa_public_attrs(), b"not a key"),
    )
    assert [k.name for k in client.list_keys()] == ["server"], "failed imports leave no name"


def test_wildcard_policies(parsec: RunningParsec) -> None:
    client = parsec.client()
    key = ec.generate_private_key(ec.SECP384R1())
    attrs = key_attributes(
        "ecc_public_key", 384, sign_alg("ecdsa", None), curve_family=SECP_R1, verify_hash=True
    )
    client.import_key("any-hash", attrs, ec_point(key))
    digest = hashlib.sha384(b"x").digest()
    der = key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))
    r, s = utils.decode_dss_signature(der)
    raw = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    client.verify_hash("any-hash", sign_alg("ecdsa", SHA_384), digest, raw)
    expect(
        ResponseStatus.PSA_ERROR_INVALID_ARGUMENT,
        lambda: client.verify_hash("any-hash", sign_alg("ecdsa", None), digest, raw),
    )


def test_random_and_hash(parsec_factory: Callable[..., RunningParsec]) -> None:
    parsec = parsec_factory(config_text=parsec_config_text(extra_core="buffer_size_limit = 4096"))
    client = parsec.client()
    assert len(client.generate_random(3000)) == 3000, "larger than one RSE call"
    assert client.generate_random(16) != client.generate_random(16)
    expect(ResponseStatus.RESPONSE_TOO_LARGE, lambda: client.generate_random(5000))
    assert client.hash_compute(SHA_256, b"abc") == hashlib.sha256(b"abc").digest()
    expect(ResponseStatus.INVALID_ENCODING, lambda: client.hash_compute(0, b"abc"))
    expect(ResponseStatus.PSA_ERROR_NOT_SUPPORTED, lambda: client.hash_compute(5, b"sha-1"))


def test_applications_cannot_see_each_others_keys(direct_parsec: RunningParsec) -> None:
    alice = direct_parsec.client(Auth.direct("alice"))
    bob = direct_parsec.client(Auth.direct("bob"))
    alice.generate_key("k", ecc_pair_attrs())
    expect(ResponseStatus.PSA_ERROR_DOES_NOT_EXIST, lambda: bob.export_public_key("k"))
    expect(ResponseStatus.PSA_ERROR_DOES_NOT_EXIST, lambda: bob.destroy_key("k"))
    expect(
        ResponseStatus.PSA_ERROR_DOES_NOT_EXIST,
        lambda: bob.sign_hash("k", sign_alg("ecdsa", SHA_256), DIGEST),
    )
    bob.generate_key("k", ecc_pair_attrs())  # the same name, another application
    assert alice.export_public_key("k") != bob.export_public_key("k")
    assert [k.name for k in alice.list_keys()] == ["k"]
    bob.destroy_key("k")
    assert len(alice.export_public_key("k")) == 65


def test_admins_list_and_delete_clients(direct_parsec: RunningParsec) -> None:
    admin = direct_parsec.client(Auth.direct("admin"))
    for name in ("alice", "bob"):
        direct_parsec.client(Auth.direct(name)).generate_key(f"{name}-key", ecc_pair_attrs())
    assert admin.list_clients() == ["alice", "bob"]
    expect(
        ResponseStatus.ADMIN_OPERATION,
        lambda: direct_parsec.client(Auth.direct("bob")).list_clients(),
    )
    admin.delete_client("bob")
    assert admin.list_clients() == ["alice"]
    assert direct_parsec.client(Auth.direct("bob")).list_keys() == []
    events = _rse_events(direct_parsec.rse)
    destroyed = [
        e for e in events if e["function"] == "psa_destroy_key" and e["status"] == "PSA_SUCCESS"
    ]
    assert len(destroyed) == 1, "the client's RSE key was destroyed"


def _rse_events(rse: RunningRse) -> list[dict[str, Any]]:
    assert rse.config.events_log is not None
    lines = rse.config.events_log.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("kind") == "call"]


def test_every_operation_reaches_the_rse_as_a_persistent_key(parsec: RunningParsec) -> None:
    client = parsec.client()
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = key_attributes(
        "ecc_public_key", 256, sign_alg("ecdsa", SHA_256), curve_family=SECP_R1, verify_hash=True
    )
    client.import_key("peer", attrs, ec_point(key))
    der = key.sign(DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    r, s = utils.decode_dss_signature(der)
    client.verify_hash(
        "peer", sign_alg("ecdsa", SHA_256), DIGEST, r.to_bytes(32, "big") + s.to_bytes(32, "big")
    )
    client.destroy_key("peer")
    events = _rse_events(parsec.rse)
    assert [(e["function"], e["status"]) for e in events] == [
        ("psa_import_key", "PSA_SUCCESS"),
        ("psa_verify_hash", "PSA_SUCCESS"),
        ("psa_destroy_key", "PSA_SUCCESS"),
    ]
    assert events[0]["lifetime"] == "persistent" and events[0]["alg"] == "ECDSA(SHA_256)"
    assert events[0]["key_id"] == events[1]["key_id"] == events[2]["key_id"]


def test_rse_down_gives_communication_failure_and_recovers(
    parsec_factory: Callable[..., RunningParsec], rse_factory: Callable[..., RunningRse]
) -> None:
    rse = rse_factory("flaky")
    parsec = parsec_factory(rse=rse)
    client = parsec.client()
    client.generate_key("before", ecc_pair_attrs())
    rse.stop()
    started = time.monotonic()
    expect(
        ResponseStatus.PSA_ERROR_COMMUNICATION_FAILURE, lambda: client.export_public_key("before")
    )
    expect(
        ResponseStatus.PSA_ERROR_COMMUNICATION_FAILURE,
        lambda: client.generate_key("during", ecc_pair_attrs()),
    )
    assert time.monotonic() - started < 10
    assert client.ping() == (1, 0), "the service keeps serving"
    rse_factory("flaky")  # the RSE comes back on the same socket, with its store
    assert len(client.export_public_key("before")) == 65
    client.generate_key("during", ecc_pair_attrs())  # the interrupted creation was settled
    assert sorted(k.name for k in client.list_keys()) == ["before", "during"]


def test_many_clients_at_once_and_a_stalled_one(parsec: RunningParsec) -> None:
    parsec.client().generate_key("shared", ecc_pair_attrs())
    signature = parsec.client().sign_hash("shared", sign_alg("ecdsa", SHA_256), DIGEST)
    errors: list[BaseException] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
        stalled.connect(str(parsec.socket_path))
        stalled.sendall(b"\x10\xa7")  # and then nothing

        def worker() -> None:
            try:
                client = parsec.client()
                for _ in range(15):
                    client.verify_hash("shared", sign_alg("ecdsa", SHA_256), DIGEST, signature)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
        reply = stalled.recv(64)
        assert Header.decode(reply[: HEADER.size]).status == ResponseStatus.CONNECTION_ERROR


def test_requests_are_logged_one_line_each(
    parsec: RunningParsec, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="parsec")
    client = parsec.client()
    client.generate_random(4)
    expect(ResponseStatus.PSA_ERROR_DOES_NOT_EXIST, lambda: client.destroy_key("none"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
    assert any(
        line.startswith(
            "request app=0 provider=4 opcode=PsaGenerateRandom status=Success duration_us="
        )
        for line in lines
    )
    assert any(
        "opcode=PsaDestroyKey status=PsaErrorDoesNotExist" in line and "app=0" in line
        for line in lines
    )


def header_stage_status(data: bytes, body_len_limit: int) -> ResponseStatus | None:
    """The status the wire protocol gives ``data`` as a request when its header stage refuses
    it, in the order of upstream's checks (None: the request passes to its provider). The
    reader of the test below reports running out of bytes as a connection error."""
    if len(data) < HEADER.size:
        return ResponseStatus.CONNECTION_ERROR
    (magic, hdr_size, major, minor, _flags, provider, _session, content_type, accept_type,
     auth_type, body_len, auth_len, opcode, _status, reserved1, reserved2) = HEADER.unpack(
        data[: HEADER.size]
    )  # fmt: skip
    if magic != 0x5EC0A710 or hdr_size != 30:
        return ResponseStatus.INVALID_HEADER
    if (major, minor) != (1, 0):
        return ResponseStatus.WIRE_PROTOCOL_VERSION_NOT_SUPPORTED
    if reserved1 or reserved2:
        return ResponseStatus.INVALID_HEADER
    if body_len > body_len_limit:
        return ResponseStatus.BODY_SIZE_EXCEEDS_LIMIT
    if len(data) < HEADER.size + body_len + auth_len:
        return ResponseStatus.CONNECTION_ERROR
    if content_type != 0:
        return ResponseStatus.CONTENT_TYPE_NOT_SUPPORTED
    if accept_type != 0:
        return ResponseStatus.ACCEPT_TYPE_NOT_SUPPORTED
    if auth_type not in {a.value for a in AuthType}:
        return ResponseStatus.AUTHENTICATOR_DOES_NOT_EXIST
    if opcode not in {o.value for o in Opcode}:
        return ResponseStatus.OPCODE_DOES_NOT_EXIST
    if provider not in {p.value for p in ProviderId}:
        return ResponseStatus.PROVIDER_DOES_NOT_EXIST
    return None


@given(st.binary(max_size=200))
# Random bytes rarely get past the magic number: one request for each of the header stage's
# refusals, one that passes it, and one that fails later, in the body.
@example(b"")
@example(Header(hdr_size=29, opcode=Opcode.PING).encode())
@example(Header(version_maj=2, opcode=Opcode.PING).encode())
@example(Header(reserved2=1, opcode=Opcode.PING).encode())
@example(Header(body_len=(1 << 20) + 1, opcode=Opcode.PING).encode())
@example(Header(body_len=10, opcode=Opcode.PING).encode() + b"short")
@example(Header(content_type=1, opcode=Opcode.PING).encode())
@example(Header(accept_type=1, opcode=Opcode.PING).encode())
@example(Header(auth_type=99, opcode=Opcode.PING).encode())
@example(Header(opcode=0x7777).encode())
@example(Header(provider=200, opcode=Opcode.PING).encode())
@example(Header(opcode=Opcode.PING).encode())
@example(Header(provider=4, opcode=Opcode.PSA_DESTROY_KEY, body_len=2).encode() + b"\xff\xff")
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_request_parser_answers_any_bytes(parsec: RunningParsec, data: bytes) -> None:
    stream = memoryview(data)
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        if position + size > len(stream):
            raise WireError(ResponseStatus.CONNECTION_ERROR, "short")
        chunk = bytes(stream[position : position + size])
        position += size
        return chunk

    response = parsec.service.serve_request(read, Peer(1, 0, 0))
    header = Header.decode(response[: HEADER.size])
    assert header.magic == 0x5EC0A710 and header.hdr_size == 30
    assert len(response) == HEADER.size + header.body_len
    refused = header_stage_status(data, parsec.service.config.body_len_limit)
    if refused is not None:
        # The one status the protocol gives that failure, in a header that echoes nothing of
        # a request it could not read, and no body.
        assert (header.status, header.body_len) == (refused, 0), (refused, header)
        assert (header.provider, header.session, header.auth_type) == (0, 0, 0)
    else:
        request = Header.decode(data[: HEADER.size])
        assert header.status in {s.value for s in ResponseStatus}, header.status
        assert (header.provider, header.session, header.opcode) == (
            request.provider, request.session, request.opcode,
        )  # fmt: skip


@given(st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=4))
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_garbage_on_the_socket_never_stops_the_service(
    parsec: RunningParsec, chunks: list[bytes]
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(parsec.socket_path))
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break
    assert ParsecClient(parsec.socket_path, auth=Auth.none()).ping() == (1, 0)


def test_unknown_opcodes_are_refused_by_the_client_library_too(parsec: RunningParsec) -> None:
    client = parsec.client()
    with pytest.raises(ParsecError) as caught:
        client.request(Opcode.PSA_AEAD_ENCRYPT, client_request_body(), provider=4)
    assert caught.value.status == ResponseStatus.PSA_ERROR_NOT_SUPPORTED


def client_request_body() -> Any:
    from parsec_service import contracts as pb

    return pb.ping.Operation()


def test_exported_rsa_keys_are_pkcs1(parsec: RunningParsec) -> None:
    client = parsec.client()
    client.generate_key(
        "rsa", key_attributes("rsa_key_pair", 2048, sign_alg("rsa_pss", SHA_256), sign_hash=True)
    )
    public = serialization.load_der_public_key(client.export_public_key("rsa"))
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    signature = client.sign_hash("rsa", sign_alg("rsa_pss", SHA_256), DIGEST)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    public.verify(signature, DIGEST, pss, utils.Prehashed(hashes.SHA256()))
