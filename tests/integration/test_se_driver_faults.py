"""The Parsec SE driver against a fake Parsec service that misbehaves on purpose.

The driver's entry points run in ``parsec-se-driver-harness``, built with ASan and UBSan; each
test ends by checking that the harness exited cleanly with no sanitizer report (leaks
included). The fake service (``se_driver_harness.FakeParsec``) answers like a small Parsec
service unless a test scripts another answer: empty, truncated, oversized, trickled, garbage,
wrong opcode, wrong status, wrong lengths, AlreadyExists. Every bad answer must end in
PSA_ERROR_COMMUNICATION_FAILURE (or the PSA status a Parsec status maps to) within the
exchange's deadline, and the driver must keep working afterwards.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from parsec_demo.native_build import HostBuild
from parsec_service import contracts as pb
from parsec_service.constants import Opcode, ResponseStatus
from parsec_service.wire import HEADER, Header
from support.se_driver_harness import (
    ALG_ECDSA_SHA256,
    ALG_RSA_PKCS1V15_SHA256,
    KEY_NAME,
    KEY_TYPE_P256_PAIR,
    KEY_TYPE_RSA_PAIR,
    KEY_TYPE_RSA_PUBLIC,
    PSA_ERROR_ALREADY_EXISTS,
    PSA_ERROR_BUFFER_TOO_SMALL,
    PSA_ERROR_COMMUNICATION_FAILURE,
    PSA_ERROR_DOES_NOT_EXIST,
    PSA_ERROR_INVALID_SIGNATURE,
    PSA_ERROR_NOT_PERMITTED,
    PSA_SUCCESS,
    TEMPORARY_KEY_NAME,
    TRUSTED_SERVICE_PROVIDER,
    USAGE_EXPORT,
    USAGE_SIGN_HASH,
    USAGE_VERIFY_HASH,
    Answer,
    Behaviour,
    DriverHarness,
    FakeParsec,
    Request,
    ec_pair_data,
    public_bytes,
    raw,
    reply,
    response_bytes,
    rsa_pair_data,
    silence,
    trickle,
    verify_digest,
)

TIMEOUT_MS = 1000
DEADLINE = TIMEOUT_MS / 1000
MARGIN = 1.0  # scheduling slack on a loaded machine: a bound, not a benchmark
DIGEST = hashlib.sha256(b"the handshake transcript").digest()
KEY_USAGE = USAGE_SIGN_HASH | USAGE_VERIFY_HASH | USAGE_EXPORT


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeParsec]:
    with FakeParsec(tmp_path / "fake-parsec.sock") as service:
        yield service


DriverFactory = Callable[..., DriverHarness]


@pytest.fixture
def start_driver(
    tmp_path: Path, host_build: HostBuild, fake: FakeParsec
) -> Iterator[DriverFactory]:
    """Start harnesses talking to the fake service (keyword arguments: environment
    variables); each must exit cleanly at the end of the test."""
    started: list[DriverHarness] = []

    def start(endpoint: str | None = None, **env: str) -> DriverHarness:
        settings = {
            "PARSEC_SERVICE_ENDPOINT": endpoint or fake.endpoint,
            "PARSEC_SE_DRIVER_TIMEOUT_MS": str(TIMEOUT_MS),
        }
        settings.update(env)
        stderr = tmp_path / f"harness-{len(started)}.stderr"
        harness = DriverHarness(host_build.driver_harness, settings, stderr)
        started.append(harness)
        assert harness.init().status == PSA_SUCCESS
        return harness

    yield start
    for harness in started:
        harness.assert_clean_exit()


def driver_lines(harness: DriverHarness) -> list[str]:
    return [line for line in harness.stderr().splitlines() if line.startswith("parsec-se-driver:")]


def import_ec(harness: DriverHarness, private: ec.EllipticCurvePrivateKey) -> Answer:
    answer = harness.import_key(
        KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, KEY_USAGE, ec_pair_data(private)
    )
    assert answer.status == PSA_SUCCESS, answer.line
    assert answer.fields["bits"] == "256"
    return answer


# --- the happy paths --------------------------------------------------------------------------


def test_an_ecdsa_key_through_every_entry_point(
    start_driver: DriverFactory, fake: FakeParsec, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    private = ec_keys[256]
    driver = start_driver()  # no provider configured: the driver asks for the list
    key = import_ec(driver, private)
    assert TEMPORARY_KEY_NAME.fullmatch(key.key_name), "a volatile key, as a handshake's"
    assert list(fake.keys) == [key.key_name]

    signed = driver.sign(key.slot, ALG_ECDSA_SHA256, DIGEST)
    assert signed.status == PSA_SUCCESS and len(signed.data) == 64
    assert verify_digest(private.public_key(), DIGEST, signed.data)

    exported = driver.export(key.slot)
    assert exported.status == PSA_SUCCESS
    assert exported.data == public_bytes(private.public_key()) and len(exported.data) == 65

    assert driver.verify(key.slot, ALG_ECDSA_SHA256, DIGEST, signed.data).status == PSA_SUCCESS
    forged = bytes([signed.data[0] ^ 1]) + signed.data[1:]
    assert driver.verify(key.slot, ALG_ECDSA_SHA256, DIGEST, forged).status == (
        PSA_ERROR_INVALID_SIGNATURE
    )
    assert driver.destroy(key.slot).status == PSA_SUCCESS
    assert fake.keys == {}

    assert fake.opcodes() == [
        Opcode.LIST_PROVIDERS,
        Opcode.PSA_IMPORT_KEY,
        Opcode.PSA_SIGN_HASH,
        Opcode.PSA_EXPORT_PUBLIC_KEY,
        Opcode.PSA_VERIFY_HASH,
        Opcode.PSA_VERIFY_HASH,
        Opcode.PSA_DESTROY_KEY,
    ]
    uid = struct.pack("<I", os.getuid())
    for request in fake.requests[1:]:
        assert request.header.provider == TRUSTED_SERVICE_PROVIDER
        assert request.header.auth_type == 3 and request.auth == uid
        assert request.operation().key_name == key.key_name
    assert driver_lines(driver) == []


def test_rsa_keys_through_every_entry_point(
    start_driver: DriverFactory, fake: FakeParsec, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    private = rsa_keys[2048]
    driver = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    pair = driver.import_key(
        KEY_TYPE_RSA_PAIR, ALG_RSA_PKCS1V15_SHA256, KEY_USAGE, rsa_pair_data(private)
    )
    assert pair.status == PSA_SUCCESS and pair.fields["bits"] == "2048"
    signed = driver.sign(pair.slot, ALG_RSA_PKCS1V15_SHA256, DIGEST)
    assert signed.status == PSA_SUCCESS and len(signed.data) == 256
    assert verify_digest(private.public_key(), DIGEST, signed.data)
    exported = driver.export(pair.slot)
    assert exported.status == PSA_SUCCESS
    assert exported.data == public_bytes(private.public_key())

    # As the TLS client does: a public key imported for one verification.
    public = driver.import_key(
        KEY_TYPE_RSA_PUBLIC, ALG_RSA_PKCS1V15_SHA256, USAGE_VERIFY_HASH, exported.data
    )
    assert public.status == PSA_SUCCESS and public.fields["bits"] == "2048"
    assert public.key_name != pair.key_name
    verified = driver.verify(public.slot, ALG_RSA_PKCS1V15_SHA256, DIGEST, signed.data)
    assert verified.status == PSA_SUCCESS
    assert driver.destroy(public.slot).status == PSA_SUCCESS
    assert driver.destroy(pair.slot).status == PSA_SUCCESS
    assert fake.keys == {}
    assert Opcode.LIST_PROVIDERS not in fake.opcodes()


def test_a_generated_key_signs_and_exports(start_driver: DriverFactory, fake: FakeParsec) -> None:
    driver = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    key = driver.generate(KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, KEY_USAGE, 256)
    assert key.status == PSA_SUCCESS
    exported = driver.export(key.slot)
    assert exported.status == PSA_SUCCESS and len(exported.data) == 65
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), exported.data)
    signed = driver.sign(key.slot, ALG_ECDSA_SHA256, DIGEST)
    assert signed.status == PSA_SUCCESS and verify_digest(public, DIGEST, signed.data)
    assert driver.sign(key.slot, ALG_ECDSA_SHA256, DIGEST, size=63).status == (
        PSA_ERROR_BUFFER_TOO_SMALL
    )
    assert driver.destroy(key.slot).status == PSA_SUCCESS
    assert Opcode.LIST_KEYS not in fake.opcodes(), "the driver knew its key"


def test_a_key_from_another_process_is_looked_up_once(
    start_driver: DriverFactory, fake: FakeParsec, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    """A persistent key's slot outlives the process that made it: its type and size come
    from ListKeys, once."""
    creator = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    creator.persistent()
    key = import_ec(creator, ec_keys[256])
    assert KEY_NAME.fullmatch(key.key_name)
    user = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    for _ in range(2):
        signed = user.sign(key.slot, ALG_ECDSA_SHA256, DIGEST)
        assert signed.status == PSA_SUCCESS
        assert verify_digest(ec_keys[256].public_key(), DIGEST, signed.data)
    assert len(fake.requests_of(Opcode.LIST_KEYS)) == 1
    assert user.export(key.slot).data == public_bytes(ec_keys[256].public_key())

    # A slot the service has no key for: no signing request is sent at all.
    signs = len(fake.requests_of(Opcode.PSA_SIGN_HASH))
    assert user.sign(key.slot + 1, ALG_ECDSA_SHA256, DIGEST).status == PSA_ERROR_DOES_NOT_EXIST
    assert len(fake.requests_of(Opcode.PSA_SIGN_HASH)) == signs
    assert creator.destroy(key.slot).status == PSA_SUCCESS


# --- key names --------------------------------------------------------------------------------


def test_key_names_do_not_repeat_within_or_across_processes(start_driver: DriverFactory) -> None:
    first, second = start_driver(), start_driver()
    slots = [[h.allocate().slot for _ in range(50)] for h in (first, second)]
    assert all(len(set(s)) == 50 for s in slots)
    assert not set(slots[0]) & set(slots[1])
    # The slot is random, not the process id with a small counter.
    assert all(s >> 32 not in (first.pid(), second.pid()) for s in slots[0] + slots[1])


def test_already_exists_leaves_the_other_key_alone(
    start_driver: DriverFactory, fake: FakeParsec, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    """A client whose name is taken must fail, not replace the key another client uses."""
    owner = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    owner.persistent()
    key = import_ec(owner, ec_keys[256])
    intruder = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    intruder.persistent()
    other = ec.generate_private_key(ec.SECP256R1())
    clash = intruder.import_key(
        KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, KEY_USAGE, ec_pair_data(other), slot=key.slot
    )
    assert clash.status == PSA_ERROR_ALREADY_EXISTS
    assert fake.requests_of(Opcode.PSA_DESTROY_KEY) == []
    assert [line for line in driver_lines(intruder) if "already holds a key" in line]
    # The owner's key is still the owner's.
    signed = owner.sign(key.slot, ALG_ECDSA_SHA256, DIGEST)
    assert verify_digest(ec_keys[256].public_key(), DIGEST, signed.data)
    assert owner.export(key.slot).data == public_bytes(ec_keys[256].public_key())

    # A service that says AlreadyExists to every creation: both calls fail, nothing deleted.
    fake.on(Opcode.PSA_IMPORT_KEY, reply(ResponseStatus.PSA_ERROR_ALREADY_EXISTS))
    fake.on(Opcode.PSA_GENERATE_KEY, reply(ResponseStatus.PSA_ERROR_ALREADY_EXISTS))
    assert intruder.import_key(
        KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, KEY_USAGE, ec_pair_data(other)
    ).status == (PSA_ERROR_ALREADY_EXISTS)
    assert intruder.generate(KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, KEY_USAGE, 256).status == (
        PSA_ERROR_ALREADY_EXISTS
    )
    assert fake.requests_of(Opcode.PSA_DESTROY_KEY) == []
    assert list(fake.keys) == [key.key_name]
    assert owner.destroy(key.slot).status == PSA_SUCCESS


# --- bad answers ------------------------------------------------------------------------------


def signature_result(length: int) -> bytes:
    signature = bytes(i % 251 + 1 for i in range(length))
    return bytes(pb.psa_sign_hash.Result(signature=signature).SerializeToString())


def export_result(data: bytes) -> bytes:
    return bytes(pb.psa_export_public_key.Result(data=data).SerializeToString())


def good_signature_reply(request: Request) -> bytes:
    return response_bytes(request, 0, signature_result(64))


def oversized(request: Request) -> bytes:
    header = Header(provider=4, body_len=16 * 1024 * 1024, opcode=request.opcode)
    return header.encode() + b"\x08" * 64


def point(length: int, first: int = 4) -> bytes:
    return bytes([first]) + b"\x11" * (length - 1)


@dataclass(frozen=True)
class Fault:
    opcode: Opcode
    behaviour: Behaviour
    expected: int = PSA_ERROR_COMMUNICATION_FAILURE
    lines: int = 1  # driver lines on stderr
    waits_for_deadline: bool = False


FAULTS: dict[str, Fault] = {
    "empty-signature": Fault(Opcode.PSA_SIGN_HASH, reply(0, b"")),
    "empty-public-key": Fault(Opcode.PSA_EXPORT_PUBLIC_KEY, reply(0, b"")),
    "garbage-body": Fault(Opcode.PSA_SIGN_HASH, reply(0, b"\xff\xff\xff\xff")),
    "truncated-header": Fault(
        Opcode.PSA_SIGN_HASH, raw(lambda r: good_signature_reply(r)[: HEADER.size - 16])
    ),
    "truncated-body": Fault(
        Opcode.PSA_SIGN_HASH, raw(lambda r: good_signature_reply(r)[: HEADER.size + 20])
    ),
    "truncated-body-line-open": Fault(
        Opcode.PSA_SIGN_HASH,
        raw(lambda r: good_signature_reply(r)[: HEADER.size + 20], then_hold=True),
        waits_for_deadline=True,
    ),
    "oversized-body-len": Fault(Opcode.PSA_SIGN_HASH, raw(oversized, then_hold=True)),
    "trickled": Fault(
        Opcode.PSA_SIGN_HASH, trickle(good_signature_reply, 0.05), waits_for_deadline=True
    ),
    "trickled-header": Fault(
        Opcode.PSA_EXPORT_PUBLIC_KEY,
        trickle(lambda r: response_bytes(r, 0, export_result(point(65))), 0.1),
        waits_for_deadline=True,
    ),
    "no-answer": Fault(Opcode.PSA_VERIFY_HASH, silence(), waits_for_deadline=True),
    "garbage-magic": Fault(Opcode.PSA_SIGN_HASH, raw(lambda r: b"\x5a" * HEADER.size)),
    "wrong-opcode": Fault(
        Opcode.PSA_SIGN_HASH, reply(0, signature_result(64), opcode=Opcode.PSA_VERIFY_HASH)
    ),
    "65-byte-signature": Fault(Opcode.PSA_SIGN_HASH, reply(0, signature_result(65))),
    "63-byte-signature": Fault(Opcode.PSA_SIGN_HASH, reply(0, signature_result(63))),
    "66-byte-public-key": Fault(Opcode.PSA_EXPORT_PUBLIC_KEY, reply(0, export_result(point(66)))),
    "64-byte-public-key": Fault(Opcode.PSA_EXPORT_PUBLIC_KEY, reply(0, export_result(point(64)))),
    "compressed-public-key": Fault(
        Opcode.PSA_EXPORT_PUBLIC_KEY, reply(0, export_result(point(65, first=2)))
    ),
    "status-invalid-signature": Fault(
        Opcode.PSA_VERIFY_HASH,
        reply(ResponseStatus.PSA_ERROR_INVALID_SIGNATURE),
        expected=PSA_ERROR_INVALID_SIGNATURE,
        lines=0,
    ),
    "status-does-not-exist": Fault(
        Opcode.PSA_SIGN_HASH,
        reply(ResponseStatus.PSA_ERROR_DOES_NOT_EXIST),
        expected=PSA_ERROR_DOES_NOT_EXIST,
    ),
    "status-unknown": Fault(Opcode.PSA_SIGN_HASH, reply(4242)),
    "status-backend-gone": Fault(
        Opcode.PSA_SIGN_HASH, reply(ResponseStatus.PSA_ERROR_COMMUNICATION_FAILURE)
    ),
    "status-not-authenticated-with-body": Fault(
        Opcode.PSA_EXPORT_PUBLIC_KEY,
        reply(ResponseStatus.NOT_AUTHENTICATED, export_result(point(65))),
        expected=PSA_ERROR_NOT_PERMITTED,
    ),
}


def run_operation(driver: DriverHarness, opcode: Opcode, slot: int, signature: bytes) -> Answer:
    if opcode == Opcode.PSA_SIGN_HASH:
        return driver.sign(slot, ALG_ECDSA_SHA256, DIGEST)
    if opcode == Opcode.PSA_EXPORT_PUBLIC_KEY:
        return driver.export(slot)
    return driver.verify(slot, ALG_ECDSA_SHA256, DIGEST, signature)


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_bad_answer_fails_cleanly_within_the_deadline(
    name: str,
    start_driver: DriverFactory,
    fake: FakeParsec,
    ec_keys: dict[int, ec.EllipticCurvePrivateKey],
) -> None:
    fault = FAULTS[name]
    driver = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    key = import_ec(driver, ec_keys[256])
    signature = driver.sign(key.slot, ALG_ECDSA_SHA256, DIGEST).data
    assert len(signature) == 64

    fake.on(fault.opcode, fault.behaviour)
    answer = run_operation(driver, fault.opcode, key.slot, signature)
    assert answer.status == fault.expected, answer.line
    assert answer.data == b"", "nothing reaches the caller"
    assert answer.seconds < DEADLINE + MARGIN, f"{answer.seconds:.2f} s"
    if fault.waits_for_deadline:
        assert float(answer.fields["ms"]) >= TIMEOUT_MS * 0.99, answer.line
    assert len(driver_lines(driver)) == fault.lines, driver.stderr()

    # The driver is none the worse for it.
    fake.behaviours.clear()
    assert run_operation(driver, fault.opcode, key.slot, signature).status == PSA_SUCCESS
    assert driver.destroy(key.slot).status == PSA_SUCCESS


@pytest.mark.parametrize(
    ("status", "expected", "says"),
    [
        (
            ResponseStatus.PSA_ERROR_INSUFFICIENT_STORAGE,
            -142,
            "PsaErrorInsufficientStorage (no room for another key: the application's key quota "
            "or the RSE's capacity is used up)",
        ),
        (
            ResponseStatus.BODY_SIZE_EXCEEDS_LIMIT,
            -141,
            "BodySizeExceedsLimit (the request is larger than the service allows)",
        ),
        (ResponseStatus.PSA_ERROR_HARDWARE_FAILURE, -147, "PsaErrorHardwareFailure"),
    ],
)
def test_a_refusal_is_one_line_that_names_it(
    status: ResponseStatus,
    expected: int,
    says: str,
    start_driver: DriverFactory,
    fake: FakeParsec,
    ec_keys: dict[int, ec.EllipticCurvePrivateKey],
) -> None:
    """What the service refused, for which key and what it likely means, before the caller
    (Mbed TLS) reports its own error."""
    driver = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    fake.on(Opcode.PSA_IMPORT_KEY, reply(status))
    answer = driver.import_key(
        KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, KEY_USAGE, ec_pair_data(ec_keys[256])
    )
    assert answer.status == expected
    assert driver_lines(driver) == [
        f"parsec-se-driver: the Parsec service at {fake.path} refused PsaImportKey of "
        f"temporary/parsec-se-driver-key{answer.slot}: {says}"
    ]


def test_wrong_rsa_lengths_are_refused(
    start_driver: DriverFactory, fake: FakeParsec, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    driver = start_driver(PARSEC_SE_DRIVER_PROVIDER="4")
    key = driver.import_key(
        KEY_TYPE_RSA_PAIR, ALG_RSA_PKCS1V15_SHA256, KEY_USAGE, rsa_pair_data(rsa_keys[2048])
    )
    assert key.status == PSA_SUCCESS
    small = public_bytes(rsa_keys[3072].public_key())
    good = public_bytes(rsa_keys[2048].public_key())
    for opcode, body in [
        (Opcode.PSA_SIGN_HASH, signature_result(255)),
        (Opcode.PSA_SIGN_HASH, signature_result(257)),
        (Opcode.PSA_SIGN_HASH, b""),
        (Opcode.PSA_EXPORT_PUBLIC_KEY, export_result(small)),  # another size
        (Opcode.PSA_EXPORT_PUBLIC_KEY, export_result(good + b"\x00")),  # trailing byte
        (Opcode.PSA_EXPORT_PUBLIC_KEY, export_result(good[:-1])),
    ]:
        fake.on(opcode, reply(0, body))
        if opcode == Opcode.PSA_SIGN_HASH:
            answer = driver.sign(key.slot, ALG_RSA_PKCS1V15_SHA256, DIGEST)
        else:
            answer = driver.export(key.slot)
        assert answer.status == PSA_ERROR_COMMUNICATION_FAILURE, answer.line
        fake.behaviours.clear()
    assert len(driver_lines(driver)) == 6
    assert driver.destroy(key.slot).status == PSA_SUCCESS


def test_a_bad_provider_list_fails_cleanly(start_driver: DriverFactory, fake: FakeParsec) -> None:
    fake.on(Opcode.LIST_PROVIDERS, reply(0, b"\xff\x01"))
    driver = start_driver()
    answer = driver.generate(KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, KEY_USAGE, 256)
    assert answer.status == PSA_ERROR_COMMUNICATION_FAILURE
    assert fake.opcodes() == [Opcode.LIST_PROVIDERS], "nothing is sent to an unknown provider"


def test_quiet_means_no_output(
    start_driver: DriverFactory, fake: FakeParsec, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    driver = start_driver(PARSEC_SE_DRIVER_PROVIDER="4", PARSEC_SE_DRIVER_QUIET="1")
    key = import_ec(driver, ec_keys[256])
    fake.on(Opcode.PSA_SIGN_HASH, reply(0, signature_result(65)))
    assert driver.sign(key.slot, ALG_ECDSA_SHA256, DIGEST).status == (
        PSA_ERROR_COMMUNICATION_FAILURE
    )
    assert driver.stderr() == ""
    fake.behaviours.clear()
    assert driver.destroy(key.slot).status == PSA_SUCCESS


def test_no_service_is_a_quick_communication_failure(
    start_driver: DriverFactory, tmp_path: Path
) -> None:
    driver = start_driver(endpoint=f"unix:{tmp_path / 'nothing-here.sock'}")
    answer = driver.generate(KEY_TYPE_P256_PAIR, ALG_ECDSA_SHA256, KEY_USAGE, 256)
    assert answer.status == PSA_ERROR_COMMUNICATION_FAILURE
    assert answer.seconds < DEADLINE
    assert [line for line in driver_lines(driver) if "cannot reach the Parsec service" in line]
