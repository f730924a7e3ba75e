"""Between Parsec's protobuf key attributes and algorithms and PSA's numbers.

Parsec describes keys and algorithms as protobuf messages; the RSE speaks PSA numbers. The
conversion is exact in both directions for every value the contracts can express, and a message
that leaves out something mandatory (the key type, the policy, the algorithm, a curve family of
NONE, a hash of NONE) is an invalid encoding, as upstream's conversion says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import psa
from .constants import ResponseStatus
from .contracts import psa_algorithm, psa_key_attributes
from .wire import WireError

# The generated message classes are untyped (protoc's stubs cannot name Algorithm.None), so
# messages are ``Any`` in signatures here.
AsymmetricSignature = psa_algorithm.Algorithm.AsymmetricSignature
UsageFlags = psa_key_attributes.UsageFlags


def invalid(detail: str) -> WireError:
    return WireError(ResponseStatus.INVALID_ENCODING, detail)


# --- hashes -----------------------------------------------------------------------------------

#: protobuf Algorithm.Hash value -> PSA hash algorithm
HASH_TO_PSA = {
    1: 0x02000001,  # MD2
    2: 0x02000002,  # MD4
    3: 0x02000003,  # MD5
    4: 0x02000004,  # RIPEMD160
    5: 0x02000005,  # SHA_1
    6: 0x02000008,  # SHA_224
    7: psa.ALG_SHA_256,
    8: psa.ALG_SHA_384,
    9: psa.ALG_SHA_512,
    10: 0x0200000C,  # SHA_512_224
    11: 0x0200000D,  # SHA_512_256
    12: 0x02000010,  # SHA3_224
    13: 0x02000011,  # SHA3_256
    14: 0x02000012,  # SHA3_384
    15: 0x02000013,  # SHA3_512
}
HASH_FROM_PSA = {v: k for k, v in HASH_TO_PSA.items()}


def hash_to_psa(value: int) -> int:
    if value not in HASH_TO_PSA:
        raise invalid(f"hash value {value}")
    return HASH_TO_PSA[value]


# --- signature algorithms ---------------------------------------------------------------------

_SIGN_BASES = {
    "rsa_pkcs1v15_sign": psa.ALG_RSA_PKCS1V15_SIGN_BASE,
    "rsa_pss": psa.ALG_RSA_PSS_BASE,
    "ecdsa": psa.ALG_ECDSA_BASE,
    "deterministic_ecdsa": psa.ALG_DETERMINISTIC_ECDSA_BASE,
}
_SIGN_NAMES = {base: name for name, base in _SIGN_BASES.items()}
ALG_RSA_PKCS1V15_SIGN_RAW = psa.ALG_RSA_PKCS1V15_SIGN_BASE
ALG_ECDSA_ANY = psa.ALG_ECDSA_BASE


def sign_alg_to_psa(message: Any) -> int:
    variant = message.WhichOneof("variant")
    if variant is None:
        raise invalid("asymmetric signature algorithm without a variant")
    if variant == "rsa_pkcs1v15_sign_raw":
        return ALG_RSA_PKCS1V15_SIGN_RAW
    if variant == "ecdsa_any":
        return ALG_ECDSA_ANY
    sign_hash = getattr(message, variant).hash_alg
    which = sign_hash.WhichOneof("variant")
    if which == "any":
        hash_alg = psa.ALG_ANY_HASH
    elif which == "specific":
        hash_alg = hash_to_psa(sign_hash.specific)
    else:
        raise invalid(f"{variant} without a hash")
    return _SIGN_BASES[variant] | (hash_alg & psa.ALG_HASH_MASK)


def sign_alg_from_psa(alg: int) -> Any:
    message = AsymmetricSignature()
    if alg == ALG_RSA_PKCS1V15_SIGN_RAW:
        message.rsa_pkcs1v15_sign_raw.SetInParent()
        return message
    if alg == ALG_ECDSA_ANY:
        message.ecdsa_any.SetInParent()
        return message
    name = _SIGN_NAMES.get(psa.sign_base(alg))
    if name is None:
        raise ValueError(f"{psa.alg_name(alg)} is not a signature algorithm")
    sign_hash = getattr(message, name).hash_alg
    hash_alg = psa.sign_hash_alg(alg)
    if hash_alg == psa.ALG_ANY_HASH:
        sign_hash.any.SetInParent()
    else:
        sign_hash.specific = HASH_FROM_PSA[hash_alg]
    return message


# --- whole algorithms (key policies) ----------------------------------------------------------

_CIPHERS = {
    1: 0x04800100,  # STREAM_CIPHER
    2: 0x04C01000,  # CTR
    3: 0x04C01100,  # CFB
    4: 0x04C01200,  # OFB
    5: 0x0440FF00,  # XTS
    6: 0x04404400,  # ECB_NO_PADDING
    7: 0x04404000,  # CBC_NO_PADDING
    8: 0x04404100,  # CBC_PKCS7
}
_AEADS = {1: 0x05500100, 2: 0x05500200, 3: 0x05100500}  # CCM, GCM, CHACHA20_POLY1305
_KEY_AGREEMENTS = {1: 0x09010000, 2: 0x09020000}  # FFDH, ECDH
_KDF_BASES = {"hkdf": 0x08000100, "tls12_prf": 0x08000200, "tls12_psk_to_ms": 0x08000300}
_MAC_FULL = {"cbc_mac": 0x03C00100, "cmac": 0x03C00200}
_HMAC_BASE = 0x03800000
_LENGTH_MASK = 0x003F0000


def _kdf_to_psa(message: Any) -> int:
    variant = message.WhichOneof("variant")
    if variant is None:
        raise invalid("key derivation without a variant")
    return _KDF_BASES[variant] | (hash_to_psa(getattr(message, variant).hash_alg) & 0xFF)


def _mac_full_to_psa(message: Any) -> int:
    variant = message.WhichOneof("variant")
    if variant is None:
        raise invalid("MAC without a variant")
    if variant == "hmac":
        return _HMAC_BASE | (hash_to_psa(message.hmac.hash_alg) & 0xFF)
    return _MAC_FULL[variant]


def algorithm_to_psa(message: Any) -> int:
    """A key policy's algorithm as a PSA number."""
    variant = message.WhichOneof("variant")
    if variant is None:
        raise invalid("algorithm without a variant")
    if variant == "none":
        return psa.ALG_NONE
    if variant == "hash":
        return hash_to_psa(message.hash)
    if variant == "asymmetric_signature":
        return sign_alg_to_psa(message.asymmetric_signature)
    if variant == "cipher":
        if message.cipher not in _CIPHERS:
            raise invalid(f"cipher {message.cipher}")
        return _CIPHERS[message.cipher]
    if variant == "aead":
        return _aead_to_psa(message.aead)
    if variant == "mac":
        mac = message.mac
        which = mac.WhichOneof("variant")
        if which == "full_length":
            return _mac_full_to_psa(mac.full_length)
        if which == "truncated":
            base = _mac_full_to_psa(mac.truncated.mac_alg)
            return (base & ~_LENGTH_MASK) | ((mac.truncated.mac_length & 0x3F) << 16)
        raise invalid("MAC without a variant")
    if variant == "asymmetric_encryption":
        enc = message.asymmetric_encryption
        which = enc.WhichOneof("variant")
        if which == "rsa_pkcs1v15_crypt":
            return 0x07000200
        if which == "rsa_oaep":
            return 0x07000300 | (hash_to_psa(enc.rsa_oaep.hash_alg) & 0xFF)
        raise invalid("asymmetric encryption without a variant")
    if variant == "key_agreement":
        agreement = message.key_agreement
        which = agreement.WhichOneof("variant")
        if which == "raw":
            return _key_agreement_raw(agreement.raw)
        if which == "with_key_derivation":
            derived = agreement.with_key_derivation
            return _key_agreement_raw(derived.ka_alg) | _kdf_to_psa(derived.kdf_alg)
        raise invalid("key agreement without a variant")
    return _kdf_to_psa(message.key_derivation)


def _aead_to_psa(message: Any) -> int:
    which = message.WhichOneof("variant")
    if which == "aead_with_default_length_tag":
        value = message.aead_with_default_length_tag
        if value not in _AEADS:
            raise invalid(f"AEAD {value}")
        return _AEADS[value]
    if which == "aead_with_shortened_tag":
        short = message.aead_with_shortened_tag
        if short.aead_alg not in _AEADS:
            raise invalid(f"AEAD {short.aead_alg}")
        return (_AEADS[short.aead_alg] & ~_LENGTH_MASK) | ((short.tag_length & 0x3F) << 16)
    raise invalid("AEAD without a variant")


def _key_agreement_raw(value: int) -> int:
    if value not in _KEY_AGREEMENTS:
        raise invalid(f"key agreement {value}")
    return _KEY_AGREEMENTS[value]


# --- key types, usage, attributes -------------------------------------------------------------

#: protobuf EccFamily -> PSA ECC family
ECC_FAMILIES = {1: 0x17, 2: 0x12, 3: 0x1B, 4: 0x27, 5: 0x22, 6: 0x2B, 7: 0x30, 8: 0x33, 9: 0x41}
ECC_FAMILIES_FROM_PSA = {v: k for k, v in ECC_FAMILIES.items()}
_DH_RFC7919 = 0x03
_SIMPLE_KEY_TYPES = {
    "raw_data": 0x1001,
    "hmac": 0x1100,
    "derive": 0x1200,
    "aes": 0x2400,
    "des": 0x2301,
    "camellia": 0x2403,
    "arc4": 0x2002,
    "chacha20": 0x2004,
    "rsa_public_key": psa.KEY_TYPE_RSA_PUBLIC_KEY,
    "rsa_key_pair": psa.KEY_TYPE_RSA_KEY_PAIR,
}


def key_type_to_psa(message: Any) -> int:
    variant = message.WhichOneof("variant")
    if variant is None:
        raise invalid("key type without a variant")
    if variant in _SIMPLE_KEY_TYPES:
        return _SIMPLE_KEY_TYPES[variant]
    if variant in ("ecc_key_pair", "ecc_public_key"):
        family = getattr(message, variant).curve_family
        if family not in ECC_FAMILIES:
            raise invalid("ECC key type without a curve family")
        maker = psa.ecc_key_pair if variant == "ecc_key_pair" else psa.ecc_public_key
        return maker(ECC_FAMILIES[family])
    base = 0x7200 if variant == "dh_key_pair" else 0x4200
    return base | _DH_RFC7919


_USAGE_FIELDS = {
    "export": psa.USAGE_EXPORT,
    "copy": psa.USAGE_COPY,
    "cache": 0x0004,
    "encrypt": psa.USAGE_ENCRYPT,
    "decrypt": psa.USAGE_DECRYPT,
    "sign_message": psa.USAGE_SIGN_MESSAGE,
    "verify_message": psa.USAGE_VERIFY_MESSAGE,
    "sign_hash": psa.USAGE_SIGN_HASH,
    "verify_hash": psa.USAGE_VERIFY_HASH,
    "derive": psa.USAGE_DERIVE,
}


def usage_to_psa(message: Any) -> int:
    return sum(bit for name, bit in _USAGE_FIELDS.items() if getattr(message, name))


def usage_from_psa(usage: int) -> Any:
    return UsageFlags(**{name: bool(usage & bit) for name, bit in _USAGE_FIELDS.items()})


@dataclass(frozen=True)
class PsaKeyAttributes:
    type: int
    bits: int
    usage: int
    alg: int


def attributes_to_psa(message: Any) -> PsaKeyAttributes:
    if not message.HasField("key_type"):
        raise invalid("key attributes without a key type")
    if not message.HasField("key_policy"):
        raise invalid("key attributes without a policy")
    policy = message.key_policy
    if not policy.HasField("key_usage_flags"):
        raise invalid("key policy without usage flags")
    if not policy.HasField("key_algorithm"):
        raise invalid("key policy without an algorithm")
    return PsaKeyAttributes(
        type=key_type_to_psa(message.key_type),
        bits=message.key_bits,
        usage=usage_to_psa(policy.key_usage_flags),
        alg=algorithm_to_psa(policy.key_algorithm),
    )
