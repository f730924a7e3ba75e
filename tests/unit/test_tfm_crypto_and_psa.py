"""TF-M crypto call structures and PSA numbers: layouts and names must match the C side."""

from __future__ import annotations

import struct

import pytest

from parsec_service import psa
from parsec_service.rse_link.tfm_crypto import FunctionId, KeyAttributes, PackIovec, function_name


def test_pack_iovec_has_the_tfm_2_1_layout() -> None:
    pack = PackIovec(
        function_id=FunctionId.VERIFY_HASH,
        key_id=0x7FFFFFE0,
        alg=0x06000209,
        op_handle=3,
        ad_length=4,
        plaintext_length=5,
        nonce=b"\x11" * 12,
        step=6,
        value=0x0102030405060708,
    )
    data = pack.encode()
    assert len(data) == 56
    assert struct.unpack_from("<5I", data, 0) == (0x7FFFFFE0, 0x06000209, 3, 4, 5)
    assert data[20:36] == b"\x11" * 12 + b"\0" * 4
    assert struct.unpack_from("<I", data, 36) == (12,)  # nonce_length
    assert struct.unpack_from("<HH", data, 40) == (0x0703, 6)  # function_id, step
    assert data[44:48] == b"\0" * 4  # padding before the 8-byte aligned union
    assert struct.unpack_from("<Q", data, 48) == (0x0102030405060708,)
    assert PackIovec.decode(data) == pack


def test_pack_iovec_rejects_wrong_sizes_and_nonce_lengths() -> None:
    with pytest.raises(ValueError):
        PackIovec.decode(b"\0" * 55)
    bad_nonce = bytearray(PackIovec(FunctionId.GENERATE_RANDOM).encode())
    bad_nonce[36] = 17
    with pytest.raises(ValueError, match="nonce_length"):
        PackIovec.decode(bytes(bad_nonce))


def test_client_key_attributes_layout() -> None:
    attrs = KeyAttributes(0x4001, 2048, 0x100, 0x2000, 0x06000209, 0, 0x1234)
    data = attrs.encode()
    assert data == struct.pack("<HHIIIII", 0x4001, 2048, 0x100, 0x2000, 0x06000209, 0, 0x1234)
    assert len(data) == 24
    assert KeyAttributes.decode(data) == attrs


def test_function_ids_match_tfm() -> None:
    assert FunctionId.GENERATE_RANDOM == 0x0100
    assert FunctionId.IMPORT_KEY == 0x0203
    assert FunctionId.DESTROY_KEY == 0x0204
    assert FunctionId.EXPORT_PUBLIC_KEY == 0x0206
    assert FunctionId.GENERATE_KEY == 0x0209
    assert FunctionId.SIGN_HASH == 0x0702
    assert FunctionId.VERIFY_HASH == 0x0703
    assert function_name(0x0703) == "psa_verify_hash"
    assert function_name(0x0999) == "function 0x0999"


def test_psa_algorithm_encodings_and_names() -> None:
    assert psa.rsa_pkcs1v15_sign(psa.ALG_SHA_256) == 0x06000209
    assert psa.rsa_pss(psa.ALG_SHA_384) == 0x0600030A
    assert psa.ecdsa(psa.ALG_SHA_256) == 0x06000609
    assert psa.deterministic_ecdsa(psa.ALG_SHA_512) == 0x0600070B
    assert psa.alg_name(0x06000209) == "RSA_PKCS1V15_SIGN(SHA_256)"
    assert psa.alg_name(psa.ecdsa(psa.ALG_ANY_HASH)) == "ECDSA(ANY_HASH)"
    assert psa.alg_name(psa.ALG_SHA_384) == "SHA_384"
    assert psa.alg_name(0x12345678) == "0x12345678"
    assert psa.sign_hash_alg(0x06000609) == psa.ALG_SHA_256


def test_psa_key_type_and_lifetime_names() -> None:
    assert psa.KEY_TYPE_ECC_PUBLIC_KEY_SECP_R1 == 0x4112
    assert psa.KEY_TYPE_ECC_KEY_PAIR_SECP_R1 == 0x7112
    assert psa.key_type_name(0x4001) == "RSA_PUBLIC_KEY"
    assert psa.key_type_name(0x7112) == "ECC_KEY_PAIR(SECP_R1)"
    assert psa.public_key_type_of(0x7112) == 0x4112
    assert psa.lifetime_name(0) == "volatile"
    assert psa.lifetime_name(psa.lifetime_from(0, psa.LOCATION_PRIMARY_SECURE_ELEMENT)) == (
        "volatile@0x000001"
    )


def test_psa_status_names_and_errors() -> None:
    assert psa.status_name(0) == "PSA_SUCCESS"
    assert psa.status_name(-149) == "PSA_ERROR_INVALID_SIGNATURE"
    assert psa.status_name(-999) == "PSA_STATUS(-999)"
    error = psa.PsaError(-133, "no")
    assert error.status == -133
    assert str(error) == "PSA_ERROR_NOT_PERMITTED: no"
