"""PSA Crypto API numbers (PSA Crypto 1.x, PSA FF-M client errors) and their names.

Every component of the demo speaks these numbers on some wire: the RSE model answers with
them, the Parsec service maps them to ``1000 - status``, the C driver returns them to Mbed TLS.
Keeping them in one module, with a name for each, lets logs and test failures say
``PSA_ERROR_INVALID_SIGNATURE`` instead of ``-149``.
"""

from __future__ import annotations

import enum
import functools


class Status(enum.IntEnum):
    """``psa_status_t`` values: PSA Crypto API 1.x plus the FF-M client errors."""

    SUCCESS = 0
    PROGRAMMER_ERROR = -129
    CONNECTION_REFUSED = -130
    CONNECTION_BUSY = -131
    GENERIC_ERROR = -132
    NOT_PERMITTED = -133
    NOT_SUPPORTED = -134
    INVALID_ARGUMENT = -135
    INVALID_HANDLE = -136
    BAD_STATE = -137
    BUFFER_TOO_SMALL = -138
    ALREADY_EXISTS = -139
    DOES_NOT_EXIST = -140
    INSUFFICIENT_MEMORY = -141
    INSUFFICIENT_STORAGE = -142
    INSUFFICIENT_DATA = -143
    COMMUNICATION_FAILURE = -145
    STORAGE_FAILURE = -146
    HARDWARE_FAILURE = -147
    INSUFFICIENT_ENTROPY = -148
    INVALID_SIGNATURE = -149
    INVALID_PADDING = -150
    CORRUPTION_DETECTED = -151
    DATA_CORRUPT = -152
    DATA_INVALID = -153


@functools.lru_cache(maxsize=256)  # on every RSE console line and event; pure
def status_name(value: int) -> str:
    """``PSA_SUCCESS`` / ``PSA_ERROR_<NAME>``, or the raw number for values PSA does not define."""
    try:
        status = Status(value)
    except ValueError:
        return f"PSA_STATUS({value})"
    return "PSA_SUCCESS" if status is Status.SUCCESS else f"PSA_ERROR_{status.name}"


class PsaError(Exception):
    """A PSA operation failed with ``status``; raised by the RSE model and its clients."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = int(status)
        self.detail = detail
        text = status_name(self.status)
        super().__init__(f"{text}: {detail}" if detail else text)


# --- key types --------------------------------------------------------------------------------

KEY_TYPE_NONE = 0x0000
KEY_TYPE_RSA_PUBLIC_KEY = 0x4001
KEY_TYPE_RSA_KEY_PAIR = 0x7001
KEY_TYPE_ECC_PUBLIC_KEY_BASE = 0x4100
KEY_TYPE_ECC_KEY_PAIR_BASE = 0x7100
KEY_TYPE_ECC_CURVE_MASK = 0x00FF
ECC_FAMILY_SECP_R1 = 0x12

_ECC_FAMILY_NAMES = {
    0x17: "SECP_K1",
    0x12: "SECP_R1",
    0x1B: "SECP_R2",
    0x27: "SECT_K1",
    0x22: "SECT_R1",
    0x2B: "SECT_R2",
    0x30: "BRAINPOOL_P_R1",
    0x33: "FRP",
    0x41: "MONTGOMERY",
    0x42: "TWISTED_EDWARDS",
}


def ecc_public_key(family: int) -> int:
    return KEY_TYPE_ECC_PUBLIC_KEY_BASE | family


def ecc_key_pair(family: int) -> int:
    return KEY_TYPE_ECC_KEY_PAIR_BASE | family


KEY_TYPE_ECC_PUBLIC_KEY_SECP_R1 = ecc_public_key(ECC_FAMILY_SECP_R1)
KEY_TYPE_ECC_KEY_PAIR_SECP_R1 = ecc_key_pair(ECC_FAMILY_SECP_R1)


def key_type_is_ecc(key_type: int) -> bool:
    return key_type & ~KEY_TYPE_ECC_CURVE_MASK in (
        KEY_TYPE_ECC_PUBLIC_KEY_BASE,
        KEY_TYPE_ECC_KEY_PAIR_BASE,
    )


def key_type_is_key_pair(key_type: int) -> bool:
    return key_type & 0x7000 == 0x7000


def key_type_is_public_key(key_type: int) -> bool:
    return key_type & 0x7000 == 0x4000


def ecc_family(key_type: int) -> int:
    return key_type & KEY_TYPE_ECC_CURVE_MASK


def public_key_type_of(key_type: int) -> int:
    """The public-key type of a key pair type (``PSA_KEY_TYPE_PUBLIC_KEY_OF_KEY_PAIR``)."""
    return key_type & ~0x3000 if key_type_is_key_pair(key_type) else key_type


@functools.lru_cache(maxsize=256)
def key_type_name(key_type: int) -> str:
    if key_type == KEY_TYPE_RSA_PUBLIC_KEY:
        return "RSA_PUBLIC_KEY"
    if key_type == KEY_TYPE_RSA_KEY_PAIR:
        return "RSA_KEY_PAIR"
    if key_type_is_ecc(key_type):
        kind = "ECC_KEY_PAIR" if key_type_is_key_pair(key_type) else "ECC_PUBLIC_KEY"
        family = _ECC_FAMILY_NAMES.get(ecc_family(key_type), f"0x{ecc_family(key_type):02x}")
        return f"{kind}({family})"
    if key_type == KEY_TYPE_NONE:
        return "NONE"
    return f"0x{key_type:04x}"


# --- algorithms -------------------------------------------------------------------------------

ALG_NONE = 0
ALG_HASH_MASK = 0x000000FF
ALG_SHA_256 = 0x02000009
ALG_SHA_384 = 0x0200000A
ALG_SHA_512 = 0x0200000B
ALG_ANY_HASH = 0x020000FF

ALG_RSA_PKCS1V15_SIGN_BASE = 0x06000200
ALG_RSA_PSS_BASE = 0x06000300
ALG_ECDSA_BASE = 0x06000600
ALG_DETERMINISTIC_ECDSA_BASE = 0x06000700

_HASH_NAMES = {
    0x02000003: "MD5",
    0x02000004: "RIPEMD160",
    0x02000005: "SHA_1",
    0x02000008: "SHA_224",
    ALG_SHA_256: "SHA_256",
    ALG_SHA_384: "SHA_384",
    ALG_SHA_512: "SHA_512",
    0x0200000C: "SHA_512_224",
    0x0200000D: "SHA_512_256",
    0x02000010: "SHA3_224",
    0x02000011: "SHA3_256",
    0x02000012: "SHA3_384",
    0x02000013: "SHA3_512",
    ALG_ANY_HASH: "ANY_HASH",
}

_SIGN_BASE_NAMES = {
    ALG_RSA_PKCS1V15_SIGN_BASE: "RSA_PKCS1V15_SIGN",
    ALG_RSA_PSS_BASE: "RSA_PSS",
    ALG_ECDSA_BASE: "ECDSA",
    ALG_DETERMINISTIC_ECDSA_BASE: "DETERMINISTIC_ECDSA",
}

#: Digest sizes in bytes of the hashes this project signs with.
HASH_LENGTHS = {ALG_SHA_256: 32, ALG_SHA_384: 48, ALG_SHA_512: 64}


def rsa_pkcs1v15_sign(hash_alg: int) -> int:
    return ALG_RSA_PKCS1V15_SIGN_BASE | (hash_alg & ALG_HASH_MASK)


def rsa_pss(hash_alg: int) -> int:
    return ALG_RSA_PSS_BASE | (hash_alg & ALG_HASH_MASK)


def ecdsa(hash_alg: int) -> int:
    return ALG_ECDSA_BASE | (hash_alg & ALG_HASH_MASK)


def deterministic_ecdsa(hash_alg: int) -> int:
    return ALG_DETERMINISTIC_ECDSA_BASE | (hash_alg & ALG_HASH_MASK)


def alg_is_hash(alg: int) -> bool:
    return alg & 0x7F000000 == 0x02000000


def alg_is_sign(alg: int) -> bool:
    """True for the hash-and-sign algorithms this project knows (``PSA_ALG_IS_SIGN_HASH``)."""
    return alg & ~ALG_HASH_MASK in _SIGN_BASE_NAMES


def sign_base(alg: int) -> int:
    return alg & ~ALG_HASH_MASK


def sign_hash_alg(alg: int) -> int:
    """The hash of a signature algorithm (``PSA_ALG_SIGN_GET_HASH``); 0 if it has none."""
    low = alg & ALG_HASH_MASK
    return 0x02000000 | low if low else ALG_NONE


@functools.lru_cache(maxsize=256)
def alg_name(alg: int) -> str:
    if alg == ALG_NONE:
        return "NONE"
    if alg in _HASH_NAMES:
        return _HASH_NAMES[alg]
    if alg == ALG_ECDSA_BASE:
        return "ECDSA_ANY"
    if alg == ALG_RSA_PKCS1V15_SIGN_BASE:
        return "RSA_PKCS1V15_SIGN_RAW"
    if alg_is_sign(alg):
        hash_alg = sign_hash_alg(alg)
        inner = _HASH_NAMES.get(hash_alg, f"0x{hash_alg:08x}") if hash_alg else "NONE"
        return f"{_SIGN_BASE_NAMES[sign_base(alg)]}({inner})"
    return f"0x{alg:08x}"


# --- usage flags and lifetimes ----------------------------------------------------------------

USAGE_EXPORT = 0x0001
USAGE_COPY = 0x0002
USAGE_ENCRYPT = 0x0100
USAGE_DECRYPT = 0x0200
USAGE_SIGN_MESSAGE = 0x0400
USAGE_VERIFY_MESSAGE = 0x0800
USAGE_SIGN_HASH = 0x1000
USAGE_VERIFY_HASH = 0x2000
USAGE_DERIVE = 0x4000

_USAGE_NAMES = {
    USAGE_EXPORT: "EXPORT",
    USAGE_COPY: "COPY",
    USAGE_ENCRYPT: "ENCRYPT",
    USAGE_DECRYPT: "DECRYPT",
    USAGE_SIGN_MESSAGE: "SIGN_MESSAGE",
    USAGE_VERIFY_MESSAGE: "VERIFY_MESSAGE",
    USAGE_SIGN_HASH: "SIGN_HASH",
    USAGE_VERIFY_HASH: "VERIFY_HASH",
    USAGE_DERIVE: "DERIVE",
}


def usage_names(usage: int) -> str:
    names = [name for bit, name in _USAGE_NAMES.items() if usage & bit]
    rest = usage & ~sum(_USAGE_NAMES)
    if rest:
        names.append(f"0x{rest:x}")
    return "|".join(names) or "0"


LIFETIME_VOLATILE = 0x00000000
LIFETIME_PERSISTENT = 0x00000001
PERSISTENCE_VOLATILE = 0x00
PERSISTENCE_DEFAULT = 0x01
PERSISTENCE_READ_ONLY = 0xFF
LOCATION_LOCAL_STORAGE = 0x000000
LOCATION_PRIMARY_SECURE_ELEMENT = 0x000001


def lifetime_persistence(lifetime: int) -> int:
    return lifetime & 0xFF


def lifetime_location(lifetime: int) -> int:
    return (lifetime >> 8) & 0xFFFFFF


def lifetime_from(persistence: int, location: int) -> int:
    return (location << 8) | persistence


def lifetime_name(lifetime: int) -> str:
    persistence = lifetime_persistence(lifetime)
    name = {PERSISTENCE_VOLATILE: "volatile", PERSISTENCE_DEFAULT: "persistent"}.get(
        persistence, f"persistence=0x{persistence:02x}"
    )
    location = lifetime_location(lifetime)
    return f"{name}@0x{location:06x}" if location else name


# Key identifiers (PSA_KEY_ID_*).
KEY_ID_NULL = 0
KEY_ID_USER_MIN = 0x00000001
KEY_ID_USER_MAX = 0x3FFFFFFF
KEY_ID_VENDOR_MIN = 0x40000000
KEY_ID_VENDOR_MAX = 0x7FFFFFFF
