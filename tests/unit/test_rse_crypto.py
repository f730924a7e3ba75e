"""PSA semantics of the RSE model's crypto service, driven through the client over a socket.

Every function id, every error path of the issue: formats, policies, sizes, signatures, handles,
slot limits, persistence and per-client key ownership.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from parsec_rse_model.keys import KeyMaterial, load_material
from parsec_rse_model.keystore import MAC_CONTEXT, MAC_FIELD, SECRET_NAME, KeyStore, StoreError
from parsec_service import psa
from parsec_service.psa import PsaError, Status
from parsec_service.rse_link.client import RseClient
from parsec_service.rse_link.tfm_crypto import CRYPTO_HANDLE, FunctionId, KeyAttributes, PackIovec
from support.keyhelpers import ec_point, ec_scalar, rsa_private_der, rsa_public_der
from support.rse_store import key_files
from support.running import RunningRse

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
    assert (
        "psa_generate_key: type=ECC_KEY_PAIR(SECP_R1) bits=256 lifetime=volatile -> "
        "PSA_ERROR_INSUFFICIENT_MEMORY (all 4 key slots are in use; raise --slots)"
    ) in rse.console()


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
    assert sorted(p.name for p in rse.config.store_dir.iterdir()) == [
        ".lock",
        "key-0100-00000001.json",
        "store.key",
    ]
    assert (
        "[ITS] Cannot write key file key-0100-00000002.json: No space left on device "
        "-> PSA_ERROR_INSUFFICIENT_STORAGE"
    ) in rse.console()
    assert client.import_key(persistent(rsa_pub_attrs(), 2), data) == 2


# --- the persistent store: its limit, its faults, its authentication --------------------------


P256_PAIR = psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1


def p256_material(seed: int) -> KeyMaterial:
    return load_material(P256_PAIR, 256, ec_scalar(ec.derive_private_key(seed, ec.SECP256R1())))


def p256_attrs(key_id: int) -> KeyAttributes:
    return KeyAttributes(
        type=P256_PAIR,
        bits=256,
        lifetime=psa.LIFETIME_PERSISTENT,
        usage=SIGN_VERIFY,
        alg=ECDSA_SHA256,
        id=key_id,
    )


def assert_table_is_disk(store: KeyStore) -> set[tuple[int, int]]:
    """The table's persistent keys are exactly the files, and reopening loads the same keys."""
    table = {ref: key for ref, key in store.snapshot().items() if key.persistent}
    assert set(table) == key_files(store.store_dir)
    reopened = KeyStore(store.store_dir)
    assert {ref: key.material.data for ref, key in reopened.snapshot().items()} == {
        ref: key.material.data for ref, key in table.items()
    }
    return set(table)


def test_the_persistent_key_limit_is_store_wide_and_configurable(
    rse_factory: Callable[..., RunningRse], ec_keys: dict[int, ec.EllipticCurvePrivateKey]
) -> None:
    point = ec_point(ec_keys[256])
    public = ecc_attrs(False, 256, VERIFY)
    rse = rse_factory(max_keys=3)
    with rse.client(1) as alice, rse.client(2) as bob:
        alice.import_key(persistent(public, 1), point)
        alice.import_key(persistent(public, 2), point)
        bob.import_key(persistent(public, 1), point)
        full = Status.INSUFFICIENT_STORAGE
        expect_status(full, lambda: bob.import_key(persistent(public, 2), point))
        expect_status(full, lambda: alice.import_key(persistent(public, 3), point))
        assert bob.import_key(public, point) >= 0x7FFFFFE0, "volatile keys do not count"
        alice.destroy_key(2)
        assert bob.import_key(persistent(public, 2), point) == 2
    rse.stop()
    console = rse.console()
    assert "persistent_keys=0 max_keys=3 max_connections=64" in console
    assert console.count("[ITS] Persistent key store full: 3 keys (--max-keys)") == 2
    assert (
        "-> PSA_ERROR_INSUFFICIENT_STORAGE (persistent key store full at 3 keys; raise --max-keys)"
    ) in console
    smaller = rse_factory(max_keys=2)
    with smaller.client(1) as alice:
        assert alice.export_public_key(1) == point, "a lower limit drops no stored key"
        expect_status(full, lambda: alice.import_key(persistent(public, 4), point))
    assert (
        "[ITS] The store holds 3 keys, more than --max-keys 2: new persistent keys are refused "
        "until some are destroyed"
    ) in smaller.console()


class Faults:
    """Make chosen file operations of the key store fail, as a sick disk would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def open_tmp(self, code: int) -> None:
        real = os.open

        def fake(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
            if Path(path).name.startswith(".tmp-key"):
                raise OSError(code, os.strerror(code), str(path))
            return real(path, flags, mode, **kw)

        self.monkeypatch.setattr(os, "open", fake)

    def write(self, code: int) -> None:
        def fake(fd: int, data: bytes) -> int:
            raise OSError(code, os.strerror(code))

        self.monkeypatch.setattr(os, "write", fake)

    def fsync(self, code: int, directory: bool) -> None:
        real = os.fsync

        def fake(fd: int) -> None:
            if stat.S_ISDIR(os.fstat(fd).st_mode) == directory:
                raise OSError(code, os.strerror(code))
            real(fd)

        self.monkeypatch.setattr(os, "fsync", fake)

    def replace(self, code: int) -> None:
        def fake(src: Any, dst: Any) -> None:
            raise OSError(code, os.strerror(code), str(src))

        self.monkeypatch.setattr(os, "replace", fake)

    def unlink(self, code: int, prefix: str) -> None:
        real = Path.unlink

        def fake(path: Path, missing_ok: bool = False) -> None:
            if path.name.startswith(prefix):
                raise OSError(code, os.strerror(code), str(path))
            real(path, missing_ok=missing_ok)

        self.monkeypatch.setattr(Path, "unlink", fake)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    return Faults(monkeypatch)


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        ("open", errno.EROFS, Status.STORAGE_FAILURE),
        ("open", errno.ENOSPC, Status.INSUFFICIENT_STORAGE),
        ("write", errno.EDQUOT, Status.INSUFFICIENT_STORAGE),
        ("write", errno.EIO, Status.STORAGE_FAILURE),
        ("fsync", errno.EIO, Status.STORAGE_FAILURE),
        ("replace", errno.EACCES, Status.STORAGE_FAILURE),
    ],
)
def test_a_failed_key_file_write_leaves_no_key_and_says_why(
    tmp_path: Path, faults: Faults, fault: str, code: int, status: Status
) -> None:
    lines: list[str] = []
    store = KeyStore(tmp_path / "store", warn=lines.append)
    store.add(1, p256_attrs(1), p256_material(1))
    {
        "open": lambda: faults.open_tmp(code),
        "write": lambda: faults.write(code),
        "fsync": lambda: faults.fsync(code, directory=False),
        "replace": lambda: faults.replace(code),
    }[fault]()
    error = expect_status(status, lambda: store.add(1, p256_attrs(2), p256_material(2)))
    faults.monkeypatch.undo()
    reason = os.strerror(code)
    assert error.detail == f"cannot write key file key-0001-00000002.json: {reason}"
    assert lines[-1] == (
        f"[ITS] Cannot write key file key-0001-00000002.json: {reason} -> {psa.status_name(status)}"
    )
    expect_status(Status.INVALID_HANDLE, lambda: store.get(1, 2))
    assert assert_table_is_disk(store) == {(1, 1)}, "no key, no file, no unfinished write"
    store.add(1, p256_attrs(2), p256_material(2))
    assert assert_table_is_disk(store) == {(1, 1), (1, 2)}


def test_an_unfinished_write_that_cannot_be_removed_goes_at_the_next_start(
    tmp_path: Path, faults: Faults
) -> None:
    lines: list[str] = []
    store = KeyStore(tmp_path / "store", warn=lines.append)
    faults.write(errno.ENOSPC)
    faults.unlink(errno.EROFS, ".tmp-")
    expect_status(
        Status.INSUFFICIENT_STORAGE, lambda: store.add(1, p256_attrs(2), p256_material(2))
    )
    faults.monkeypatch.undo()
    assert lines[-2:] == [
        "[ITS] Cannot remove unfinished write .tmp-key-0001-00000002.json: Read-only file "
        "system; it is removed at the next start",
        "[ITS] Cannot write key file key-0001-00000002.json: No space left on device "
        "-> PSA_ERROR_INSUFFICIENT_STORAGE",
    ]
    assert store.snapshot() == {}
    leftover = tmp_path / "store" / ".tmp-key-0001-00000002.json"
    assert leftover.exists()
    lines.clear()
    reopened = KeyStore(tmp_path / "store", warn=lines.append)
    assert lines == ["[ITS] Removing unfinished write .tmp-key-0001-00000002.json"]
    assert not leftover.exists() and reopened.snapshot() == {}


def test_a_write_that_cannot_be_made_durable_is_taken_back(tmp_path: Path, faults: Faults) -> None:
    lines: list[str] = []
    store = KeyStore(tmp_path / "store", warn=lines.append)
    faults.fsync(errno.EIO, directory=True)
    expect_status(Status.STORAGE_FAILURE, lambda: store.add(1, p256_attrs(2), p256_material(2)))
    faults.monkeypatch.undo()
    assert lines[-1] == (
        "[ITS] Cannot make key file key-0001-00000002.json durable: Input/output error "
        "-> PSA_ERROR_STORAGE_FAILURE"
    )
    assert assert_table_is_disk(store) == set()


def test_a_write_that_can_be_neither_made_durable_nor_taken_back_keeps_the_key(
    tmp_path: Path, faults: Faults
) -> None:
    lines: list[str] = []
    store = KeyStore(tmp_path / "store", warn=lines.append)
    faults.fsync(errno.EIO, directory=True)
    faults.unlink(errno.EROFS, "key-")
    expect_status(Status.STORAGE_FAILURE, lambda: store.add(1, p256_attrs(2), p256_material(2)))
    faults.monkeypatch.undo()
    assert lines[-1] == (
        "[ITS] Cannot take back key file key-0001-00000002.json: Read-only file system; "
        "the key stays in the store"
    )
    assert store.get(1, 2).material.data == p256_material(2).data
    assert assert_table_is_disk(store) == {(1, 2)}
    expect_status(Status.ALREADY_EXISTS, lambda: store.add(1, p256_attrs(2), p256_material(2)))


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EIO])
def test_a_key_whose_file_cannot_be_removed_is_not_destroyed(
    tmp_path: Path, faults: Faults, code: int
) -> None:
    lines: list[str] = []
    store = KeyStore(tmp_path / "store", warn=lines.append)
    store.add(3, p256_attrs(7), p256_material(7))
    faults.unlink(code, "key-")
    error = expect_status(Status.STORAGE_FAILURE, lambda: store.destroy(3, 7))
    faults.monkeypatch.undo()
    assert error.detail == f"cannot remove key file key-0003-00000007.json: {os.strerror(code)}"
    assert lines[-1] == (
        f"[ITS] Cannot remove key file key-0003-00000007.json: {os.strerror(code)} "
        "-> PSA_ERROR_STORAGE_FAILURE"
    )
    assert store.get(3, 7).material.data == p256_material(7).data, (
        "the key is still there and usable"
    )
    assert assert_table_is_disk(store) == {(3, 7)}
    store.destroy(3, 7)
    assert assert_table_is_disk(store) == set()


def test_a_removal_that_cannot_be_made_durable_is_reported(tmp_path: Path, faults: Faults) -> None:
    lines: list[str] = []
    store = KeyStore(tmp_path / "store", warn=lines.append)
    store.add(3, p256_attrs(7), p256_material(7))
    faults.fsync(errno.EIO, directory=True)
    expect_status(Status.STORAGE_FAILURE, lambda: store.destroy(3, 7))
    faults.monkeypatch.undo()
    assert lines[-1] == (
        "[ITS] Cannot make the removal of key-0003-00000007.json durable: Input/output error "
        "-> PSA_ERROR_STORAGE_FAILURE"
    )
    assert assert_table_is_disk(store) == set(), "the file is gone, so is the key"


def test_a_key_whose_file_vanished_is_destroyed(tmp_path: Path) -> None:
    lines: list[str] = []
    store = KeyStore(tmp_path / "store", warn=lines.append)
    store.add(3, p256_attrs(7), p256_material(7))
    (tmp_path / "store" / "key-0003-00000007.json").unlink()
    store.destroy(3, 7)
    assert lines[-1] == "[ITS] Key file key-0003-00000007.json was already gone"
    assert assert_table_is_disk(store) == set()


def test_the_store_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    lines: list[str] = []
    store = KeyStore(tmp_path / "store", warn=lines.append)
    secret_path = tmp_path / "store" / SECRET_NAME
    secret = secret_path.read_bytes()
    assert len(secret) == 32 and secret != bytes(32)
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert lines == ["[ITS] Created the store secret store.key"]
    store.add(1, p256_attrs(1), p256_material(1))
    lines.clear()
    KeyStore(tmp_path / "store", warn=lines.append)
    assert secret_path.read_bytes() == secret and lines == []
    assert KeyStore(tmp_path / "other").store_dir.joinpath(SECRET_NAME).read_bytes() != secret


def test_a_bad_store_secret_stops_the_start(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    KeyStore(store_dir).add(1, p256_attrs(1), p256_material(1))
    secret_path = store_dir / SECRET_NAME
    secret = secret_path.read_bytes()
    secret_path.write_bytes(secret[:31])
    with pytest.raises(StoreError) as caught:
        KeyStore(store_dir)
    assert str(caught.value) == (
        f"the store secret {secret_path} is damaged (31 bytes, not 32); "
        "restore it, or move the store aside to start empty"
    )
    secret_path.unlink()
    secret_path.mkdir()
    with pytest.raises(StoreError, match=r"^cannot read the store secret .*: Is a directory$"):
        KeyStore(store_dir)
    secret_path.rmdir()
    with pytest.raises(StoreError) as caught:
        KeyStore(store_dir)
    assert str(caught.value) == (
        f"the store secret {secret_path} is missing but 1 key files need it; "
        "restore it, or move the store aside to start empty"
    )
    assert not secret_path.exists(), "no new secret replaces the lost one"
    secret_path.write_bytes(secret)
    assert KeyStore(store_dir).get(1, 1).material.data == p256_material(1).data


def read_record(path: Path) -> dict[str, Any]:
    record = json.loads(path.read_text())
    assert isinstance(record, dict)
    return record


def write_record(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, sort_keys=True) + "\n")


def authentic(record: dict[str, Any], secret: bytes) -> dict[str, Any]:
    """The record with the MAC that only a holder of the store secret can compute."""
    body = {name: value for name, value in record.items() if name != MAC_FIELD}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    mac = hmac.new(secret, MAC_CONTEXT + canonical, hashlib.sha256).hexdigest()
    return {**body, MAC_FIELD: mac}


def test_key_files_are_authenticated_by_the_store_secret(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store = KeyStore(store_dir)
    store.add(1, p256_attrs(1), p256_material(1))
    path = store_dir / "key-0001-00000001.json"
    record = read_record(path)
    assert record["format"] == 2 and record["owner"] == 1 and record["id"] == 1
    secret = (store_dir / SECRET_NAME).read_bytes()
    assert authentic(record, secret) == record, "HMAC-SHA256 of the whole record"

    lines: list[str] = []
    for name, value in [
        ("usage", psa.USAGE_EXPORT | SIGN_VERIFY),
        ("alg", psa.ALG_ANY_HASH),
        ("lifetime", 0),
        ("data", p256_material(2).data.hex()),
    ]:
        write_record(path, {**record, name: value})
        lines.clear()
        assert KeyStore(store_dir, warn=lines.append).snapshot() == {}, name
        assert lines == [
            "[ITS] Ignoring damaged key file key-0001-00000001.json: authentication failed "
            "(altered, or not made with this store's secret)"
        ]
    # Whoever holds the secret can make a record; without it nobody can.
    write_record(path, authentic({**record, "usage": psa.USAGE_VERIFY_HASH}, secret))
    assert KeyStore(store_dir).get(1, 1).attributes.usage == psa.USAGE_VERIFY_HASH
    write_record(path, authentic(record, bytes(32)))
    assert KeyStore(store_dir).snapshot() == {}
    unsigned = {name: value for name, value in record.items() if name != MAC_FIELD}
    write_record(path, unsigned)
    assert KeyStore(store_dir).snapshot() == {}


def test_a_destroyed_key_cannot_be_brought_back_by_copying_files(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store = KeyStore(store_dir)
    for owner, key_id in [(1, 5), (1, 6), (2, 9)]:
        store.add(owner, p256_attrs(key_id), p256_material(key_id))
    store.destroy(1, 5)
    files = {ref: store_dir / f"key-{ref[0]:04x}-{ref[1]:08x}.json" for ref in [(1, 6), (2, 9)]}
    shutil.copy(files[(1, 6)], store_dir / "key-0001-00000005.json")  # another id
    shutil.copy(files[(2, 9)], store_dir / "key-0001-00000009.json")  # another client
    os.rename(files[(1, 6)], store_dir / "key-0003-00000006.json")  # a rename
    # An attacker without the secret edits owner and id to match, with a fresh plain digest.
    forged = read_record(files[(2, 9)])
    forged.update(owner=1, id=7)
    del forged[MAC_FIELD]
    forged[MAC_FIELD] = hashlib.sha256(
        json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    write_record(store_dir / "key-0001-00000007.json", forged)

    lines: list[str] = []
    reopened = KeyStore(store_dir, warn=lines.append)
    assert set(reopened.snapshot()) == {(2, 9)}
    assert lines == [
        "[ITS] Ignoring key file key-0001-00000005.json: it holds key 0x00000006 of client "
        "0x0001, not the key its name says (a copied or renamed file)",
        "[ITS] Ignoring damaged key file key-0001-00000007.json: authentication failed "
        "(altered, or not made with this store's secret)",
        "[ITS] Ignoring key file key-0001-00000009.json: it holds key 0x00000009 of client "
        "0x0002, not the key its name says (a copied or renamed file)",
        "[ITS] Ignoring key file key-0003-00000006.json: it holds key 0x00000006 of client "
        "0x0001, not the key its name says (a copied or renamed file)",
    ]


def test_key_files_of_another_store_are_refused(tmp_path: Path) -> None:
    mine, theirs = KeyStore(tmp_path / "mine"), KeyStore(tmp_path / "theirs")
    theirs.add(1, p256_attrs(4), p256_material(4))
    shutil.copy(tmp_path / "theirs" / "key-0001-00000004.json", tmp_path / "mine")
    lines: list[str] = []
    assert KeyStore(mine.store_dir, warn=lines.append).snapshot() == {}
    assert lines == [
        "[ITS] Ignoring damaged key file key-0001-00000004.json: authentication failed "
        "(altered, or not made with this store's secret)"
    ]


def test_format_1_key_files_are_not_loaded(tmp_path: Path) -> None:
    """The unauthenticated format of earlier versions: refused by name, never trusted."""
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    old: dict[str, Any] = {
        "format": 1,
        "owner": 1,
        "id": 3,
        "type": P256_PAIR,
        "bits": 256,
        "lifetime": psa.LIFETIME_PERSISTENT,
        "usage": SIGN_VERIFY,
        "alg": ECDSA_SHA256,
        "alg2": 0,
        "data": p256_material(3).data.hex(),
    }
    old["sha256"] = hashlib.sha256(
        json.dumps(old, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    write_record(store_dir / "key-0001-00000003.json", old)
    lines: list[str] = []
    store = KeyStore(store_dir, warn=lines.append)
    assert store.snapshot() == {}
    assert lines == [
        "[ITS] Created the store secret store.key",
        "[ITS] Ignoring key file key-0001-00000003.json: store format 1 has no authentication "
        "and is not loaded; import the key again",
    ]
    store.add(1, p256_attrs(3), p256_material(3))
    assert read_record(store_dir / "key-0001-00000003.json")["format"] == 2
    assert KeyStore(store_dir).get(1, 3).material.data == p256_material(3).data


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


def test_the_volatile_count_follows_the_slots(tmp_path: Path) -> None:
    """Every call's event reports ``volatile_keys`` from a counter: it must match the slots
    through additions, a full table, destructions, other clients and persistent keys."""
    store = KeyStore(tmp_path / "store", slots=3)

    def volatile_in_table() -> int:
        return sum(1 for key in store.snapshot().values() if not key.persistent)

    volatile = replace(p256_attrs(0), lifetime=psa.LIFETIME_VOLATILE)
    ids = [store.add(owner, volatile, p256_material(owner + 1)).id for owner in (1, 2, 1)]
    assert store.volatile_in_use() == volatile_in_table() == 3
    expect_status(Status.INSUFFICIENT_MEMORY, lambda: store.add(1, volatile, p256_material(9)))
    store.add(1, p256_attrs(5), p256_material(5))  # persistent: not a slot
    expect_status(Status.INVALID_HANDLE, lambda: store.destroy(1, ids[1]))  # client 2's key
    assert store.volatile_in_use() == volatile_in_table() == 3
    store.destroy(2, ids[1])
    store.destroy(1, 5)
    assert store.volatile_in_use() == volatile_in_table() == 2
    assert store.add(2, volatile, p256_material(7)).id == ids[1], "the freed slot is reused"
    for owner, key_id in ((1, ids[0]), (1, ids[2]), (2, ids[1])):
        store.destroy(owner, key_id)
    assert store.volatile_in_use() == volatile_in_table() == 0
