"""The TF-M crypto service of the RSE model: one PSA Crypto call in, one status and outputs out.

Each function checks the shape of its vectors first (a malformed call is the caller's bug:
``PSA_ERROR_PROGRAMMER_ERROR``, as TF-M's crypto partition answers), then applies PSA semantics:
the key must exist for this client (``INVALID_HANDLE``), carry the usage flag and permit the
algorithm (``NOT_PERMITTED``), the algorithm must suit the key and the sizes must be right
(``INVALID_ARGUMENT``), and only then is the cryptography done.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from parsec_service import psa
from parsec_service.psa import PsaError, Status
from parsec_service.rse_link.tfm_crypto import (
    KEY_ATTRIBUTES,
    KEY_ID,
    PACK_IOVEC,
    FunctionId,
    KeyAttributes,
    PackIovec,
    function_name,
)

from . import keys
from .keystore import KeyStore, StoredKey

#: Largest psa_generate_random request, as Mbed TLS's MBEDTLS_PSA_RANDOM_MAX_REQUEST.
MAX_RANDOM_REQUEST = 1024


@dataclass
class CallRecord:
    """What one crypto call did, for the console line and the JSON event."""

    function_id: int
    client_id: int
    key_id: int | None = None
    key_type: int | None = None
    bits: int | None = None
    lifetime: int | None = None
    alg: int | None = None
    size: int | None = None
    status: int = Status.SUCCESS
    detail: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def function(self) -> str:
        return function_name(self.function_id)

    def console_line(self) -> str:
        parts = []
        if self.function_id in (FunctionId.IMPORT_KEY, FunctionId.GENERATE_KEY):
            if self.key_type is not None:
                parts.append(f"type={psa.key_type_name(self.key_type)}")
            if self.bits is not None:
                parts.append(f"bits={self.bits}")
            if self.lifetime is not None:
                parts.append(f"lifetime={psa.lifetime_name(self.lifetime)}")
            ok = self.status == Status.SUCCESS and self.key_id is not None
            result = f"key 0x{self.key_id:08x}" if ok else psa.status_name(self.status)
        else:
            if self.key_id is not None:
                parts.append(f"key 0x{self.key_id:08x}")
            if self.alg is not None:
                parts.append(f"alg={psa.alg_name(self.alg)}")
            if self.size is not None:
                parts.append(f"{self.size} bytes")
            result = psa.status_name(self.status)
        if self.status != Status.SUCCESS and self.detail:
            result += f" ({self.detail})"
        return f"[Crypto] {self.function}: {' '.join(parts)} -> {result}"

    def event(self) -> dict[str, object]:
        record: dict[str, object] = {
            "function": self.function,
            "function_id": self.function_id,
            "client_id": self.client_id,
            "status": psa.status_name(self.status),
            "status_code": self.status,
        }
        if self.key_id is not None:
            record["key_id"] = self.key_id
        if self.key_type is not None:
            record["key_type"] = psa.key_type_name(self.key_type)
            record["key_type_id"] = self.key_type
        if self.bits is not None:
            record["bits"] = self.bits
        if self.lifetime is not None:
            record["lifetime"] = psa.lifetime_name(self.lifetime)
        if self.alg is not None:
            record["alg"] = psa.alg_name(self.alg)
            record["alg_id"] = self.alg
        if self.size is not None:
            record["size"] = self.size
        if self.detail and self.status != Status.SUCCESS:
            record["detail"] = self.detail
        record.update(self.extra)
        return record


Handler = Callable[
    ["CryptoService", PackIovec, Sequence[bytes], Sequence[int], CallRecord], list[bytes]
]


def algorithm_permits(policy: int, requested: int) -> bool:
    """``psa_key_algorithm_permits`` for signatures: exact match, or the policy's ANY_HASH."""
    if policy == psa.ALG_NONE:
        return False
    if policy == requested:
        return True
    return (
        psa.alg_is_sign(requested)
        and psa.sign_hash_alg(policy) == psa.ALG_ANY_HASH
        and psa.sign_base(policy) == psa.sign_base(requested)
        and psa.sign_hash_alg(requested) != psa.ALG_NONE
    )


def extend_usage(usage: int) -> int:
    """PSA 1.1: permission to sign or verify a hash implies the same for a message."""
    if usage & psa.USAGE_SIGN_HASH:
        usage |= psa.USAGE_SIGN_MESSAGE
    if usage & psa.USAGE_VERIFY_HASH:
        usage |= psa.USAGE_VERIFY_MESSAGE
    return usage


class CryptoService:
    def __init__(self, store: KeyStore) -> None:
        self.store = store

    def call(
        self, client_id: int, in_vecs: Sequence[bytes], out_sizes: Sequence[int]
    ) -> tuple[int, list[bytes], CallRecord | None]:
        """Run one call; the record is None when in_vec[0] is not even a pack iovec."""
        if not in_vecs or len(in_vecs[0]) != PACK_IOVEC.size:
            return Status.PROGRAMMER_ERROR, [], None
        try:
            pack = PackIovec.decode(in_vecs[0])
        except ValueError:
            return Status.PROGRAMMER_ERROR, [], None
        record = CallRecord(pack.function_id, client_id)
        entry = _HANDLERS.get(pack.function_id)
        if entry is None:
            record.status = Status.NOT_SUPPORTED
            record.detail = "unknown function id"
            return record.status, [], record
        handler, in_count, out_count = entry
        if len(in_vecs) != in_count or len(out_sizes) != out_count:
            record.status = Status.PROGRAMMER_ERROR
            record.detail = f"expects {in_count} in and {out_count} out vectors"
            return record.status, [], record
        try:
            outs = handler(self, pack, in_vecs[1:], out_sizes, record)
        except PsaError as exc:
            record.status = exc.status
            record.detail = exc.detail
            return exc.status, [], record
        record.extra["volatile_keys"] = self.store.volatile_in_use()
        return Status.SUCCESS, outs, record

    # --- helpers ------------------------------------------------------------------------------

    def _key(
        self,
        client_id: int,
        key_id: int,
        record: CallRecord,
        usage: int = 0,
        alg: int | None = None,
    ) -> StoredKey:
        record.key_id = key_id
        if alg is not None:
            record.alg = alg
        key = self.store.get(client_id, key_id)
        record.key_type = key.attributes.type
        record.bits = key.attributes.bits
        if key.attributes.usage & usage != usage:
            raise PsaError(
                Status.NOT_PERMITTED,
                f"key usage {psa.usage_names(key.attributes.usage)} lacks {psa.usage_names(usage)}",
            )
        if alg is not None and not (
            algorithm_permits(key.attributes.alg, alg)
            or algorithm_permits(key.attributes.alg2, alg)
        ):
            raise PsaError(
                Status.NOT_PERMITTED,
                f"key permits {psa.alg_name(key.attributes.alg)}, not {psa.alg_name(alg)}",
            )
        return key

    @staticmethod
    def _check_sign_alg(alg: int) -> None:
        if not psa.alg_is_sign(alg):
            raise PsaError(
                Status.INVALID_ARGUMENT, f"{psa.alg_name(alg)} is not a signature algorithm"
            )
        if psa.sign_hash_alg(alg) == psa.ALG_ANY_HASH:
            raise PsaError(Status.INVALID_ARGUMENT, "a wildcard is a policy, not an algorithm")

    @staticmethod
    def _output(data: bytes, capacity: int) -> list[bytes]:
        if len(data) > capacity:
            raise PsaError(
                Status.BUFFER_TOO_SMALL, f"needs {len(data)} bytes, buffer has {capacity}"
            )
        return [data]

    def _store_new(
        self,
        client_id: int,
        attrs: KeyAttributes,
        material: keys.KeyMaterial,
        record: CallRecord,
        out_size: int,
    ) -> list[bytes]:
        if out_size < KEY_ID.size:
            raise PsaError(Status.PROGRAMMER_ERROR, "key id output smaller than 4 bytes")
        key = self.store.add(client_id, replace(attrs, usage=extend_usage(attrs.usage)), material)
        record.key_id = key.id
        record.bits = key.attributes.bits
        return [KEY_ID.pack(key.id)]

    # --- functions ----------------------------------------------------------------------------

    def generate_random(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        record.size = outs[0]
        if outs[0] > MAX_RANDOM_REQUEST:
            raise PsaError(Status.INVALID_ARGUMENT, f"more than {MAX_RANDOM_REQUEST} bytes")
        return [os.urandom(outs[0])]

    def get_key_attributes(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        key = self._key(record.client_id, pack.key_id, record)
        return self._output(key.attributes.encode(), outs[0])

    def import_key(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        attrs = self._decode_attributes(ins[0], record)
        material = keys.load_material(attrs.type, attrs.bits, ins[1])
        return self._store_new(record.client_id, attrs, material, record, outs[0])

    def generate_key(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        attrs = self._decode_attributes(ins[0], record)
        if attrs.bits == 0:
            raise PsaError(Status.INVALID_ARGUMENT, "key generation needs a size in bits")
        material = keys.generate_material(attrs.type, attrs.bits)
        return self._store_new(record.client_id, attrs, material, record, outs[0])

    @staticmethod
    def _decode_attributes(data: bytes, record: CallRecord) -> KeyAttributes:
        if len(data) != KEY_ATTRIBUTES.size:
            raise PsaError(Status.PROGRAMMER_ERROR, f"key attributes of {len(data)} bytes")
        attrs = KeyAttributes.decode(data)
        record.key_type, record.bits, record.lifetime = attrs.type, attrs.bits, attrs.lifetime
        record.alg = attrs.alg
        return attrs

    def destroy_key(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        record.key_id = pack.key_id
        if pack.key_id == psa.KEY_ID_NULL:
            return []  # destroying the null key succeeds and does nothing (PSA 1.x)
        key = self.store.destroy(record.client_id, pack.key_id)
        record.key_type, record.bits = key.attributes.type, key.attributes.bits
        return []

    def purge_key(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        self._key(record.client_id, pack.key_id, record)
        return []  # nothing is cached apart from the key itself: purging changes nothing

    def export_key(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        key = self._key(record.client_id, pack.key_id, record, usage=psa.USAGE_EXPORT)
        return self._output(key.material.data, outs[0])

    def export_public_key(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        key = self._key(record.client_id, pack.key_id, record)
        return self._output(key.material.export_public(), outs[0])

    def sign_hash(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        return self._sign(pack, ins[0], outs[0], record, psa.USAGE_SIGN_HASH, hashed=True)

    def sign_message(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        return self._sign(pack, ins[0], outs[0], record, psa.USAGE_SIGN_MESSAGE, hashed=False)

    def _sign(
        self,
        pack: PackIovec,
        data: bytes,
        capacity: int,
        record: CallRecord,
        usage: int,
        hashed: bool,
    ) -> list[bytes]:
        record.alg = pack.alg
        self._check_sign_alg(pack.alg)
        key = self._key(record.client_id, pack.key_id, record, usage, pack.alg)
        if not psa.key_type_is_key_pair(key.attributes.type):
            raise PsaError(Status.INVALID_ARGUMENT, "cannot sign with a public key")
        if capacity < keys.signature_size(key.material):
            raise PsaError(Status.BUFFER_TOO_SMALL, f"signature buffer of {capacity} bytes")
        digest = data if hashed else keys.hash_message(pack.alg, data)
        return [keys.sign_hash(key.material, pack.alg, digest)]

    def hash_compute(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        record.alg = pack.alg
        return self._output(keys.hash_compute(pack.alg, ins[0]), outs[0])

    def hash_compare(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        record.alg = pack.alg
        if not hmac.compare_digest(keys.hash_compute(pack.alg, ins[0]), ins[1]):
            raise PsaError(Status.INVALID_SIGNATURE, "hash does not match")
        return []

    def verify_hash(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        return self._verify(pack, ins[0], ins[1], record, psa.USAGE_VERIFY_HASH, hashed=True)

    def verify_message(
        self, pack: PackIovec, ins: Sequence[bytes], outs: Sequence[int], record: CallRecord
    ) -> list[bytes]:
        return self._verify(pack, ins[0], ins[1], record, psa.USAGE_VERIFY_MESSAGE, hashed=False)

    def _verify(
        self,
        pack: PackIovec,
        data: bytes,
        signature: bytes,
        record: CallRecord,
        usage: int,
        hashed: bool,
    ) -> list[bytes]:
        record.alg = pack.alg
        self._check_sign_alg(pack.alg)
        key = self._key(record.client_id, pack.key_id, record, usage, pack.alg)
        digest = data if hashed else keys.hash_message(pack.alg, data)
        keys.verify_hash(key.material, pack.alg, digest, signature)
        return []


#: function id -> (handler, number of in-vectors including the pack iovec, out-vectors)
_HANDLERS: dict[int, tuple[Handler, int, int]] = {
    FunctionId.GENERATE_RANDOM: (CryptoService.generate_random, 1, 1),
    FunctionId.GET_KEY_ATTRIBUTES: (CryptoService.get_key_attributes, 1, 1),
    FunctionId.IMPORT_KEY: (CryptoService.import_key, 3, 1),
    FunctionId.DESTROY_KEY: (CryptoService.destroy_key, 1, 0),
    FunctionId.EXPORT_KEY: (CryptoService.export_key, 1, 1),
    FunctionId.EXPORT_PUBLIC_KEY: (CryptoService.export_public_key, 1, 1),
    FunctionId.PURGE_KEY: (CryptoService.purge_key, 1, 0),
    FunctionId.GENERATE_KEY: (CryptoService.generate_key, 2, 1),
    FunctionId.HASH_COMPUTE: (CryptoService.hash_compute, 2, 1),
    FunctionId.HASH_COMPARE: (CryptoService.hash_compare, 3, 0),
    FunctionId.SIGN_MESSAGE: (CryptoService.sign_message, 2, 1),
    FunctionId.VERIFY_MESSAGE: (CryptoService.verify_message, 3, 0),
    FunctionId.SIGN_HASH: (CryptoService.sign_hash, 2, 1),
    FunctionId.VERIFY_HASH: (CryptoService.verify_hash, 3, 0),
}
