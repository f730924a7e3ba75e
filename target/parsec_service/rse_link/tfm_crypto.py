"""TF-M crypto service call format: the pack iovec, client key attributes and function ids.

``in_vec[0]`` of every call to the crypto service (handle ``0x40000100``) is the
``tfm_crypto_pack_iovec`` of TF-M 2.1+, laid out as a 32-bit Arm core lays out the C struct:

    u32 key_id; u32 alg; u32 op_handle; u32 ad_length; u32 plaintext_length;
    u8 nonce[16]; u32 nonce_length; u16 function_id; u16 step;
    (4 bytes padding) union { u32 capacity; u64 value; }

The u64 in the union is 8-byte aligned under the AAPCS, which makes the struct 56 bytes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

CRYPTO_HANDLE = 0x40000100

PACK_IOVEC = struct.Struct("<5I16sIHH4xQ")
KEY_ATTRIBUTES = struct.Struct("<HHIIIII")
KEY_ID = struct.Struct("<I")

assert PACK_IOVEC.size == 56
assert KEY_ATTRIBUTES.size == 24


class FunctionId(enum.IntEnum):
    """TF-M crypto function ids: ``group << 8 | index``."""

    GENERATE_RANDOM = 0x0100
    GET_KEY_ATTRIBUTES = 0x0200
    OPEN_KEY = 0x0201
    CLOSE_KEY = 0x0202
    IMPORT_KEY = 0x0203
    DESTROY_KEY = 0x0204
    EXPORT_KEY = 0x0205
    EXPORT_PUBLIC_KEY = 0x0206
    PURGE_KEY = 0x0207
    COPY_KEY = 0x0208
    GENERATE_KEY = 0x0209
    HASH_COMPUTE = 0x0300
    HASH_COMPARE = 0x0301
    SIGN_MESSAGE = 0x0700
    VERIFY_MESSAGE = 0x0701
    SIGN_HASH = 0x0702
    VERIFY_HASH = 0x0703


#: The PSA API name of each function, as the console log and the JSON events print it.
FUNCTION_NAMES = {
    FunctionId.GENERATE_RANDOM: "psa_generate_random",
    FunctionId.GET_KEY_ATTRIBUTES: "psa_get_key_attributes",
    FunctionId.OPEN_KEY: "psa_open_key",
    FunctionId.CLOSE_KEY: "psa_close_key",
    FunctionId.IMPORT_KEY: "psa_import_key",
    FunctionId.DESTROY_KEY: "psa_destroy_key",
    FunctionId.EXPORT_KEY: "psa_export_key",
    FunctionId.EXPORT_PUBLIC_KEY: "psa_export_public_key",
    FunctionId.PURGE_KEY: "psa_purge_key",
    FunctionId.COPY_KEY: "psa_copy_key",
    FunctionId.GENERATE_KEY: "psa_generate_key",
    FunctionId.HASH_COMPUTE: "psa_hash_compute",
    FunctionId.HASH_COMPARE: "psa_hash_compare",
    FunctionId.SIGN_MESSAGE: "psa_sign_message",
    FunctionId.VERIFY_MESSAGE: "psa_verify_message",
    FunctionId.SIGN_HASH: "psa_sign_hash",
    FunctionId.VERIFY_HASH: "psa_verify_hash",
}


def function_name(function_id: int) -> str:
    try:
        return FUNCTION_NAMES[FunctionId(function_id)]
    except ValueError:
        return f"function 0x{function_id:04x}"


@dataclass(frozen=True)
class PackIovec:
    function_id: int
    key_id: int = 0
    alg: int = 0
    op_handle: int = 0
    ad_length: int = 0
    plaintext_length: int = 0
    nonce: bytes = b""
    step: int = 0
    value: int = 0

    def encode(self) -> bytes:
        if len(self.nonce) > 16:
            raise ValueError("nonce longer than 16 bytes")
        return PACK_IOVEC.pack(
            self.key_id,
            self.alg,
            self.op_handle,
            self.ad_length,
            self.plaintext_length,
            self.nonce.ljust(16, b"\0"),
            len(self.nonce),
            self.function_id,
            self.step,
            self.value,
        )

    @classmethod
    def decode(cls, data: bytes) -> PackIovec:
        if len(data) != PACK_IOVEC.size:
            raise ValueError(f"pack iovec is {len(data)} bytes, expected {PACK_IOVEC.size}")
        (key_id, alg, op_handle, ad_len, pt_len, nonce, nonce_len, fid, step, value) = (
            PACK_IOVEC.unpack(data)
        )
        if nonce_len > 16:
            raise ValueError(f"nonce_length {nonce_len} exceeds 16")
        return cls(fid, key_id, alg, op_handle, ad_len, pt_len, nonce[:nonce_len], step, value)


@dataclass(frozen=True)
class KeyAttributes:
    """``psa_client_key_attributes_s``: what a client says about a key it imports or creates."""

    type: int
    bits: int = 0
    lifetime: int = 0
    usage: int = 0
    alg: int = 0
    alg2: int = 0
    id: int = 0

    def encode(self) -> bytes:
        return KEY_ATTRIBUTES.pack(
            self.type, self.bits, self.lifetime, self.usage, self.alg, self.alg2, self.id
        )

    @classmethod
    def decode(cls, data: bytes) -> KeyAttributes:
        if len(data) != KEY_ATTRIBUTES.size:
            raise ValueError(f"key attributes are {len(data)} bytes, expected 24")
        return cls(*KEY_ATTRIBUTES.unpack(data))
