"""PSA semantics of the RSE model's crypto service, driven through the client over a socket.

Every function id, every error path of the issue: formats, policies, sizes, signatures, handles,
slot limits, persistence and per-client key ownership.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from conftest import RunningRse
from keyhelpers import ec_point, ec_scalar, rsa_private_der, rsa_public_der
from parsec_demo import psa
from parsec_demo.psa import PsaError, Status
from parsec_demo.rse.client import RseClient
from parsec_demo.rse.tfm_crypto import CRYPTO_HANDLE, FunctionId, KeyAttributes, PackIovec

SHA256 = psa.ALG_SHA_256
PKCS1_SHA256 = psa.rsa_pkcs1v15_sign(SHA256)
ECDSA_SHA256 = psa.ecdsa(SHA256)
VERIFY = psa.USAGE_VERIFY_HASH
SIGN_VERIFY = psa.USAGE_SIGN_HASH | psa.USAGE_VERIFY_HASH
DIGEST = hashlib.sha256(b"to be signed").digest()


def expect_status(status: Status, operation: Callable[[], object]) -> PsaError:
    with pytest.raises(PsaError) as caught:
        operation()
    assert caught.value.status == status, f"got {psa.status_name(caught.value.status)}"
    return caught.value


def rsa_pub_attrs(bits: int = 0, usage: int = VERIFY, alg: int = PKCS1_SHA256) -> KeyAttributes:
    return KeyAttributes(type=psa.KEY_TYPE_RSA_PUBLIC_KEY, bits=bits, usage=usage, alg=alg)


def ecc_attrs(
    pair: bool, bits: int, usage: int = SIGN_VERIFY, alg: int = ECDSA_SHA256
) -> KeyAttributes:
    key_type = psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1 if pair else psa.KEY_TYPE_ECC_PUBLIC_KEY_SECP_R1
    return KeyAttributes(type=key_type, bits=bits, usage=usage, alg=alg)


def der_to_raw(der: bytes, size: int) -> bytes:
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# --- import and export ------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_rsa_public_keys_import_with_their_size(
    client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey], bits: int
) -> None:
    data = rsa_public_der(rsa_keys[bits])
    key_id = client.import_key(rsa_pub_attrs(bits=0), data)
    assert psa.KEY_ID_VENDOR_MIN <= key_id <= psa.KEY_ID_VENDOR_MAX
    attrs = client.get_key_attributes(key_id)
    assert (attrs.type, attrs.bits, attrs.id, attrs.alg) == (0x4001, bits, key_id, PKCS1_SHA256)
    # PSA 1.1: permission to verify a hash extends to verifying a message.
    assert attrs.usage == psa.USAGE_VERIFY_HASH | psa.USAGE_VERIFY_MESSAGE
    assert client.export_public_key(key_id) == data


def test_rsa_import_rejects_bad_data_sizes_and_formats(
    client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    key = rsa_keys[2048]
    pkcs1 = rsa_public_der(key)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bad = Status.INVALID_ARGUMENT
    expect_status(bad, lambda: client.import_key(rsa_pub_attrs(bits=3072), pkcs1))
    expect_status(bad, lambda: client.import_key(rsa_pub_attrs(), spki))
    expect_status(bad, lambda: client.import_key(rsa_pub_attrs(), pkcs1 + b"\0"))
    expect_status(bad, lambda: client.import_key(rsa_pub_attrs(), pkcs1[:-1]))
    expect_status(bad, lambda: client.import_key(rsa_pub_attrs(), b"garbage"))
    small = rsa.generate_private_key(65537, 1024)
    expect_status(
        Status.NOT_SUPPORTED, lambda: client.import_key(rsa_pub_attrs(), rsa_public_der(small))
    )
    none_type = KeyAttributes(type=psa.KEY_TYPE_NONE)
    expect_status(bad, lambda: client.import_key(none_type, pkcs1))
    aes = KeyAttributes(type=0x2400, bits=128)
    expect_status(Status.NOT_SUPPORTED, lambda: client.import_key(aes, b"\0" * 16))


@pytest.mark.parametrize("bits", [256, 384, 521])
def test_ecc_public_keys_and_pairs_import(
    client: RseClient, ec_keys: dict[int, ec.EllipticCurvePrivateKey], bits: int
) -> None:
    key = ec_keys[bits]
    public_id = client.import_key(ecc_attrs(False, bits, usage=VERIFY), ec_point(key))
    assert client.get_key_attributes(public_id).bits == bits
    assert client.export_public_key(public_id) == ec_point(key)
    pair_id = client.import_key(ecc_attrs(True, 0), ec_scalar(key))
    assert client.get_key_attributes(pair_id).bits == bits
    assert client.export_public_key(pair_id) == ec_point(key)


def test_ecc_import_rejects_bad_points_and_scalars(
    client: RseClient, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    point = ec_point(ec_keys[256])
    compressed = (
        ec_keys[256]
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    )
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    bad = Status.INVALID_ARGUMENT
    expect_status(bad, lambda: client.import_key(ecc_attrs(False, 256, VERIFY), compressed))
    expect_status(bad, lambda: client.import_key(ecc_attrs(False, 256, VERIFY), off_curve))
    expect_status(bad, lambda: client.import_key(ecc_attrs(False, 384, VERIFY), point))
    expect_status(bad, lambda: client.import_key(ecc_attrs(True, 256), b"\0" * 32))
    n256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    expect_status(bad, lambda: client.import_key(ecc_attrs(True, 256), n256.to_bytes(32, "big")))
    k1 = KeyAttributes(type=psa.ecc_public_key(0x17), usage=VERIFY, alg=ECDSA_SHA256)
    expect_status(Status.NOT_SUPPORTED, lambda: client.import_key(k1, point))


def test_export_key_needs_the_export_usage(
    client: RseClient, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    scalar = ec_scalar(ec_keys[256])
    locked = client.import_key(ecc_attrs(True, 256), scalar)
    expect_status(Status.NOT_PERMITTED, lambda: client.export_key(locked))
    exportable = client.import_key(ecc_attrs(True, 256, SIGN_VERIFY | psa.USAGE_EXPORT), scalar)
    assert client.export_key(exportable) == scalar


def test_outputs_larger_than_the_buffer_are_refused(
    client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    pair = client.import_key(
        KeyAttributes(type=psa.KEY_TYPE_RSA_KEY_PAIR, usage=SIGN_VERIFY, alg=PKCS1_SHA256),
        rsa_private_der(rsa_keys[2048]),
    )
    expect_status(Status.BUFFER_TOO_SMALL, lambda: client.export_public_key(pair, size=100))
    expect_status(
        Status.BUFFER_TOO_SMALL, lambda: client.sign_hash(pair, PKCS1_SHA256, DIGEST, size=255)
    )
    assert len(client.sign_hash(pair, PKCS1_SHA256, DIGEST, size=256)) == 256


# --- generation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "bits", "alg"),
    [
        (psa.KEY_TYPE_RSA_KEY_PAIR, 2048, psa.rsa_pss(SHA256)),
        (psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1, 256, ECDSA_SHA256),
        (psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1, 384, psa.ecdsa(psa.ALG_SHA_384)),
    ],
)
def test_generated_keys_sign_and_their_public_key_verifies_outside(
    client: RseClient, key_type: int, bits: int, alg: int
) -> None:
    key_id = client.generate_key(
        KeyAttributes(type=key_type, bits=bits, usage=SIGN_VERIFY, alg=alg)
    )
    hash_alg = hashes.SHA256() if bits != 384 else hashes.SHA384()
    digest = hashlib.new(hash_alg.name, b"generated").digest()
    signature = client.sign_hash(key_id, alg, digest)
    exported = client.export_public_key(key_id)
    prehashed = utils.Prehashed(hash_alg)
    if key_type == psa.KEY_TYPE_RSA_KEY_PAIR:
        public = serialization.load_der_public_key(exported)
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == bits
        pss = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        public.verify(signature, digest, pss, prehashed)
    else:
        curve = ec.SECP256R1() if bits == 256 else ec.SECP384R1()
        ec_public = ec.EllipticCurvePublicKey.from_encoded_point(curve, exported)
        size = bits // 8
        der = utils.encode_dss_signature(
            int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        )
        ec_public.verify(der, digest, ec.ECDSA(prehashed))
    client.verify_hash(key_id, alg, digest, signature)


def test_generation_errors(client: RseClient) -> None:
    expect_status(
        Status.INVALID_ARGUMENT,
        lambda: client.generate_key(KeyAttributes(type=psa.KEY_TYPE_RSA_PUBLIC_KEY, bits=2048)),
    )
    expect_status(
        Status.INVALID_ARGUMENT,
        lambda: client.generate_key(KeyAttributes(type=psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1, bits=0)),
    )
    expect_status(
        Status.NOT_SUPPORTED,
        lambda: client.generate_key(KeyAttributes(type=psa.KEY_TYPE_RSA_KEY_PAIR, bits=1024)),
    )
    expect_status(
        Status.NOT_SUPPORTED,
        lambda: client.generate_key(
            KeyAttributes(type=psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1, bits=225)
        ),
    )


# --- signatures -------------------------------------------------------------------------------


@pytest.mark.parametrize("hash_alg", [psa.ALG_SHA_256, psa.ALG_SHA_384, psa.ALG_SHA_512])
@pytest.mark.parametrize("scheme", ["pkcs1", "pss"])
def test_rsa_signatures_from_outside_verify_inside(
    client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey], hash_alg: int, scheme: str
) -> None:
    key = rsa_keys[3072]
    algorithm = {
        psa.ALG_SHA_256: hashes.SHA256(),
        psa.ALG_SHA_384: hashes.SHA384(),
        psa.ALG_SHA_512: hashes.SHA512(),
    }[hash_alg]
    digest = hashlib.new(algorithm.name, b"outside").digest()
    if scheme == "pkcs1":
        alg, pad = psa.rsa_pkcs1v15_sign(hash_alg), padding.PKCS1v15()
    else:
        alg = psa.rsa_pss(hash_alg)
        pad = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
    signature = key.sign(digest, pad, utils.Prehashed(algorithm))
    key_id = client.import_key(rsa_pub_attrs(alg=alg), rsa_public_der(key))
    client.verify_hash(key_id, alg, digest, signature)
    tampered = signature[:-1] + bytes([signature[-1] ^ 0x80])
    expect_status(
        Status.INVALID_SIGNATURE, lambda: client.verify_hash(key_id, alg, digest, tampered)
    )
    other_digest = hashlib.new(algorithm.name, b"other").digest()
    expect_status(
        Status.INVALID_SIGNATURE, lambda: client.verify_hash(key_id, alg, other_digest, signature)
    )
    expect_status(
        Status.INVALID_SIGNATURE, lambda: client.verify_hash(key_id, alg, digest, signature[:-1])
    )


def test_rsa_key_pair_signs_pkcs1_verifiable_outside(
    client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    key = rsa_keys[2048]
    attrs = KeyAttributes(
        type=psa.KEY_TYPE_RSA_KEY_PAIR, bits=2048, usage=SIGN_VERIFY, alg=PKCS1_SHA256
    )
    key_id = client.import_key(attrs, rsa_private_der(key))
    assert client.export_public_key(key_id) == rsa_public_der(key)
    signature = client.sign_hash(key_id, PKCS1_SHA256, DIGEST)
    key.public_key().verify(signature, DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def test_ecdsa_raw_signatures_both_ways(
    client: RseClient, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    key = ec_keys[384]
    alg = psa.ecdsa(psa.ALG_SHA_384)
    digest = hashlib.sha384(b"ecdsa").digest()
    prehashed = utils.Prehashed(hashes.SHA384())
    outside = der_to_raw(key.sign(digest, ec.ECDSA(prehashed)), 48)
    public_id = client.import_key(ecc_attrs(False, 384, VERIFY, alg), ec_point(key))
    client.verify_hash(public_id, alg, digest, outside)
    expect_status(
        Status.INVALID_SIGNATURE, lambda: client.verify_hash(public_id, alg, digest, outside[:-1])
    )
    flipped = outside[:10] + bytes([outside[10] ^ 1]) + outside[11:]
    expect_status(
        Status.INVALID_SIGNATURE, lambda: client.verify_hash(public_id, alg, digest, flipped)
    )
    pair_id = client.import_key(ecc_attrs(True, 384, alg=alg), ec_scalar(key))
    inside = client.sign_hash(pair_id, alg, digest)
    assert len(inside) == 96
    size = 48
    der = utils.encode_dss_signature(
        int.from_bytes(inside[:size], "big"), int.from_bytes(inside[size:], "big")
    )
    key.public_key().verify(der, digest, ec.ECDSA(prehashed))


def test_ecdsa_any_takes_a_hash_of_any_supported_length(
    client: RseClient, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    """What Mbed TLS's pk layer uses to verify ECDSA (PSA_ALG_ECDSA_ANY)."""
    key = ec_keys[384]
    ecdsa_any = psa.ALG_ECDSA_BASE
    public_id = client.import_key(ecc_attrs(False, 384, VERIFY, ecdsa_any), ec_point(key))
    for digest, algorithm in (
        (DIGEST, hashes.SHA256()),
        (hashlib.sha512(b"x").digest(), hashes.SHA512()),
    ):
        raw = der_to_raw(key.sign(digest, ec.ECDSA(utils.Prehashed(algorithm))), 48)
        client.verify_hash(public_id, ecdsa_any, digest, raw)
        expect_status(
            Status.INVALID_SIGNATURE,
            lambda d=digest, r=raw: client.verify_hash(public_id, ecdsa_any, d, r[::-1]),
        )
    expect_status(
        Status.INVALID_ARGUMENT, lambda: client.verify_hash(public_id, ecdsa_any, b"\1" * 33, raw)
    )
    assert psa.alg_name(ecdsa_any) == "ECDSA_ANY"


def test_deterministic_ecdsa_repeats_and_randomized_does_not(
    client: RseClient, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    det = psa.deterministic_ecdsa(SHA256)
    det_id = client.import_key(ecc_attrs(True, 256, alg=det), ec_scalar(ec_keys[256]))
    assert client.sign_hash(det_id, det, DIGEST) == client.sign_hash(det_id, det, DIGEST)
    rnd_id = client.import_key(ecc_attrs(True, 256), ec_scalar(ec_keys[256]))
    assert client.sign_hash(rnd_id, ECDSA_SHA256, DIGEST) != client.sign_hash(
        rnd_id, ECDSA_SHA256, DIGEST
    )


def test_sign_and_verify_message_hash_inside(
    client: RseClient, ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    key_id = client.import_key(ecc_attrs(True, 256), ec_scalar(ec_keys[256]))
    message = b"a whole message, hashed by the RSE"
    signature = client.sign_message(key_id, ECDSA_SHA256, message)
    der = utils.encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    ec_keys[256].public_key().verify(der, message, ec.ECDSA(hashes.SHA256()))
    client.verify_message(key_id, ECDSA_SHA256, message, signature)
    expect_status(
        Status.INVALID_SIGNATURE,
        lambda: client.verify_message(key_id, ECDSA_SHA256, message + b"!", signature),
    )


# --- policy -----------------------------------------------------------------------------------


def test_usage_flags_and_permitted_algorithm_are_enforced(
    client: RseClient,
    rsa_keys: dict[int, rsa.RSAPrivateKey],
    ec_keys: dict[int, ec.EllipticCurvePrivateKey],
) -> None:
    key = rsa_keys[2048]
    digest384 = hashlib.sha384(b"x").digest()
    sig = key.sign(DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    no_verify = client.import_key(rsa_pub_attrs(usage=psa.USAGE_EXPORT), rsa_public_der(key))
    expect_status(
        Status.NOT_PERMITTED, lambda: client.verify_hash(no_verify, PKCS1_SHA256, DIGEST, sig)
    )
    strict = client.import_key(rsa_pub_attrs(), rsa_public_der(key))
    pkcs1_384 = psa.rsa_pkcs1v15_sign(psa.ALG_SHA_384)
    expect_status(
        Status.NOT_PERMITTED, lambda: client.verify_hash(strict, pkcs1_384, digest384, sig)
    )
    expect_status(
        Status.NOT_PERMITTED, lambda: client.verify_hash(strict, psa.rsa_pss(SHA256), DIGEST, sig)
    )
    wildcard = client.import_key(
        rsa_pub_attrs(alg=psa.rsa_pkcs1v15_sign(psa.ALG_ANY_HASH)), rsa_public_der(key)
    )
    client.verify_hash(wildcard, PKCS1_SHA256, DIGEST, sig)
    # alg2, the enrolment algorithm, is permitted too.
    enrolled = client.import_key(
        KeyAttributes(type=0x4001, usage=VERIFY, alg=psa.rsa_pss(SHA256), alg2=PKCS1_SHA256),
        rsa_public_der(key),
    )
    client.verify_hash(enrolled, PKCS1_SHA256, DIGEST, sig)
    no_alg = client.import_key(rsa_pub_attrs(alg=psa.ALG_NONE), rsa_public_der(key))
    expect_status(
        Status.NOT_PERMITTED, lambda: client.verify_hash(no_alg, PKCS1_SHA256, DIGEST, sig)
    )
    ec_pub = client.import_key(ecc_attrs(False, 256, usage=SIGN_VERIFY), ec_point(ec_keys[256]))
    expect_status(Status.INVALID_ARGUMENT, lambda: client.sign_hash(ec_pub, ECDSA_SHA256, DIGEST))


def test_algorithm_and_hash_must_suit_the_key(
    client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    der = rsa_public_der(rsa_keys[2048])
    ecdsa_on_rsa = client.import_key(rsa_pub_attrs(alg=ECDSA_SHA256), der)
    expect_status(
        Status.INVALID_ARGUMENT,
        lambda: client.verify_hash(ecdsa_on_rsa, ECDSA_SHA256, DIGEST, b"\0" * 256),
    )
    key_id = client.import_key(rsa_pub_attrs(), der)
    expect_status(
        Status.INVALID_ARGUMENT,
        lambda: client.verify_hash(key_id, PKCS1_SHA256, DIGEST[:20], b"\0" * 256),
    )
    expect_status(
        Status.INVALID_ARGUMENT, lambda: client.verify_hash(key_id, SHA256, DIGEST, b"\0" * 256)
    )


# --- handles, ownership, slots ----------------------------------------------------------------


def test_unknown_and_destroyed_keys_are_invalid_handles(
    client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    handle = Status.INVALID_HANDLE
    expect_status(handle, lambda: client.verify_hash(0x7FFFFFE5, PKCS1_SHA256, DIGEST, b"\0" * 256))
    expect_status(handle, lambda: client.get_key_attributes(1234))
    expect_status(handle, lambda: client.export_public_key(0x7FFFFFE0))
    key_id = client.import_key(rsa_pub_attrs(), rsa_public_der(rsa_keys[2048]))
    client.purge_key(key_id)
    client.destroy_key(key_id)
    expect_status(handle, lambda: client.destroy_key(key_id))
    expect_status(handle, lambda: client.purge_key(key_id))
    client.destroy_key(0)  # the null key: success, nothing happens


def test_keys_belong_to_the_client_that_made_them(
    rse: RunningRse, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    with rse.client(client_id=1) as alice, rse.client(client_id=2) as bob:
        key_id = alice.import_key(rsa_pub_attrs(), rsa_public_der(rsa_keys[2048]))
        expect_status(Status.INVALID_HANDLE, lambda: bob.export_public_key(key_id))
        expect_status(Status.INVALID_HANDLE, lambda: bob.destroy_key(key_id))
        assert alice.export_public_key(key_id) == rsa_public_der(rsa_keys[2048])


def test_slot_exhaustion_and_release(
    rse_factory: Callable[..., RunningRse], ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    rse = rse_factory(slots=4)
    with rse.client() as client:
        point = ec_point(ec_keys[256])
        ids = [client.import_key(ecc_attrs(False, 256, VERIFY), point) for _ in range(4)]
        assert len(set(ids)) == 4
        expect_status(
            Status.INSUFFICIENT_MEMORY,
            lambda: client.import_key(ecc_attrs(False, 256, VERIFY), point),
        )
        expect_status(Status.INSUFFICIENT_MEMORY, lambda: client.generate_key(ecc_attrs(True, 256)))
        client.destroy_key(ids[2])
        assert client.import_key(ecc_attrs(False, 256, VERIFY), point) == ids[2]
    assert "all 4 key slots are in use" in rse.console()


# --- persistence ------------------------------------------------------------------------------


def persistent(attrs: KeyAttributes, key_id: int) -> KeyAttributes:
    return KeyAttributes(
        attrs.type, attrs.bits, psa.LIFETIME_PERSISTENT, attrs.usage, attrs.alg, attrs.alg2, key_id
    )


def test_persistent_keys_survive_a_restart_and_destroy_is_durable(
    rse_factory: Callable[..., RunningRse], rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    data = rsa_public_der(rsa_keys[2048])
    first = rse_factory("rse")
    with first.client(7) as client:
        assert client.import_key(persistent(rsa_pub_attrs(), 42), data) == 42
        assert client.import_key(persistent(rsa_pub_attrs(), 43), data) == 43
        expect_status(
            Status.ALREADY_EXISTS, lambda: client.import_key(persistent(rsa_pub_attrs(), 42), data)
        )
        client.destroy_key(43)
    first.stop()
    second = rse_factory("rse")
    with second.client(7) as client:
        assert client.export_public_key(42) == data
        assert client.get_key_attributes(42).lifetime == psa.LIFETIME_PERSISTENT
        expect_status(Status.INVALID_HANDLE, lambda: client.export_public_key(43))
    with second.client(8) as other:
        expect_status(Status.INVALID_HANDLE, lambda: other.export_public_key(42))
    assert "persistent_keys=1" in second.console()


def test_lifetime_and_id_rules(client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey]) -> None:
    data = rsa_public_der(rsa_keys[2048])
    base = rsa_pub_attrs()
    bad = Status.INVALID_ARGUMENT
    expect_status(bad, lambda: client.import_key(persistent(base, 0), data))
    expect_status(bad, lambda: client.import_key(persistent(base, 0x40000000), data))
    with_id = KeyAttributes(base.type, 0, psa.LIFETIME_VOLATILE, base.usage, base.alg, 0, 5)
    expect_status(bad, lambda: client.import_key(with_id, data))
    in_se = KeyAttributes(base.type, 0, psa.lifetime_from(0, 1), base.usage, base.alg)
    expect_status(bad, lambda: client.import_key(in_se, data))
    level2 = KeyAttributes(base.type, 0, 0x02, base.usage, base.alg, 0, 9)
    expect_status(Status.NOT_SUPPORTED, lambda: client.import_key(level2, data))


def test_a_full_store_reports_insufficient_storage_and_keeps_old_keys(
    rse: RunningRse,
    client: RseClient,
    rsa_keys: dict[int, rsa.RSAPrivateKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno
    import os

    data = rsa_public_der(rsa_keys[2048])
    client.import_key(persistent(rsa_pub_attrs(), 1), data)
    real_write = os.write

    def full_disk(fd: int, payload: bytes) -> int:
        if b'"id"' in payload:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, payload)

    monkeypatch.setattr(os, "write", full_disk)
    expect_status(
        Status.INSUFFICIENT_STORAGE, lambda: client.import_key(persistent(rsa_pub_attrs(), 2), data)
    )
    monkeypatch.undo()
    expect_status(Status.INVALID_HANDLE, lambda: client.export_public_key(2))
    assert sorted(p.name for p in rse.config.store_dir.iterdir()) == ["key-0100-00000001.json"]
    assert client.import_key(persistent(rsa_pub_attrs(), 2), data) == 2


# --- random and malformed calls ---------------------------------------------------------------


def test_generate_random(client: RseClient) -> None:
    first, second = client.generate_random(32), client.generate_random(32)
    assert len(first) == 32 and first != second
    assert client.generate_random(0) == b""
    assert len(client.generate_random(1024)) == 1024
    expect_status(Status.INVALID_ARGUMENT, lambda: client.generate_random(1025))


def test_hash_compute_and_compare(client: RseClient) -> None:
    assert client.hash_compute(psa.ALG_SHA_256, b"abc") == hashlib.sha256(b"abc").digest()
    assert client.hash_compute(psa.ALG_SHA_512, b"abc") == hashlib.sha512(b"abc").digest()
    client.hash_compare(psa.ALG_SHA_384, b"abc", hashlib.sha384(b"abc").digest())
    expect_status(
        Status.INVALID_SIGNATURE,
        lambda: client.hash_compare(psa.ALG_SHA_384, b"abd", hashlib.sha384(b"abc").digest()),
    )
    expect_status(Status.NOT_SUPPORTED, lambda: client.hash_compute(0x02000005, b"sha-1"))
    expect_status(Status.INVALID_ARGUMENT, lambda: client.hash_compute(PKCS1_SHA256, b"abc"))


def test_malformed_crypto_calls_are_programmer_errors(client: RseClient) -> None:
    pack = PackIovec(FunctionId.VERIFY_HASH).encode()
    status, _ = client.call(CRYPTO_HANDLE, [pack, b"only the hash"])
    assert status == Status.PROGRAMMER_ERROR
    status, _ = client.call(CRYPTO_HANDLE, [pack[:-1], b"h", b"s"])
    assert status == Status.PROGRAMMER_ERROR
    status, _ = client.call(
        CRYPTO_HANDLE, [PackIovec(FunctionId.IMPORT_KEY).encode(), b"short", b"k"], [4]
    )
    assert status == Status.PROGRAMMER_ERROR
    status, _ = client.call(CRYPTO_HANDLE, [PackIovec(0x0999).encode()])
    assert status == Status.NOT_SUPPORTED
    status, _ = client.call(CRYPTO_HANDLE, [pack], call_type=1)
    assert status == Status.PROGRAMMER_ERROR
    status, _ = client.call(0x40000200, [pack])
    assert status == Status.NOT_PERMITTED
    # The link is still good after all of that.
    assert len(client.generate_random(8)) == 8


def test_console_and_events_describe_each_call(
    rse: RunningRse, client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    import json

    key = rsa_keys[2048]
    sig = key.sign(DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    key_id = client.import_key(rsa_pub_attrs(), rsa_public_der(key))
    client.verify_hash(key_id, PKCS1_SHA256, DIGEST, sig)
    expect_status(
        Status.INVALID_SIGNATURE,
        lambda: client.verify_hash(key_id, PKCS1_SHA256, DIGEST, sig[::-1]),
    )
    client.destroy_key(key_id)
    console = rse.console()
    assert (
        "[RSE-COMMS] Received message: protocol_ver=0 seq_num=1 client_id=0x0100 "
        "handle=0x40000100 type=0 in_len=3 out_len=1"
    ) in console
    assert (
        "[Crypto] psa_import_key: type=RSA_PUBLIC_KEY bits=2048 lifetime=volatile "
        f"-> key 0x{key_id:08x}" in console
    )
    assert (
        f"[Crypto] psa_verify_hash: key 0x{key_id:08x} alg=RSA_PKCS1V15_SIGN(SHA_256) "
        "-> PSA_SUCCESS" in console
    )
    assert "-> PSA_ERROR_INVALID_SIGNATURE" in console
    assert "[RSE-COMMS] Sending reply: seq_num=3 return_val=-149" in console
    assert rse.config.events_log is not None
    events = [json.loads(line) for line in rse.config.events_log.read_text().splitlines()]
    assert [(e["function"], e["status"]) for e in events] == [
        ("psa_import_key", "PSA_SUCCESS"),
        ("psa_verify_hash", "PSA_SUCCESS"),
        ("psa_verify_hash", "PSA_ERROR_INVALID_SIGNATURE"),
        ("psa_destroy_key", "PSA_SUCCESS"),
    ]
    assert events[0]["key_type"] == "RSA_PUBLIC_KEY" and events[0]["bits"] == 2048
    assert events[1]["alg"] == "RSA_PKCS1V15_SIGN(SHA_256)" and events[1]["key_id"] == key_id
    assert all(isinstance(e["duration_us"], int) and e["time"] > 0 for e in events)
    assert events[-1]["volatile_keys"] == 0


def test_verification_does_not_need_the_signature_to_be_made_by_cryptography(
    client: RseClient, rsa_keys: dict[int, rsa.RSAPrivateKey]
) -> None:
    """A signature the RSE made verifies with cryptography, and vice versa, for the same key."""
    key = rsa_keys[4096]
    pair = client.import_key(
        KeyAttributes(type=psa.KEY_TYPE_RSA_KEY_PAIR, usage=SIGN_VERIFY, alg=PKCS1_SHA256),
        rsa_private_der(key),
    )
    signature = client.sign_hash(pair, PKCS1_SHA256, DIGEST)
    try:
        key.public_key().verify(
            signature, DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
    except InvalidSignature:  # pragma: no cover - the assertion below explains
        pytest.fail("the RSE's RSA-4096 signature does not verify with cryptography")
