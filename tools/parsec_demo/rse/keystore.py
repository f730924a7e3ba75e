"""The RSE model's key store: volatile key slots and persistent keys on disk.

Keys belong to the client that created them (the RSE comms ``client_id``), as TF-M's crypto
service keys belong to the caller's partition or NS client: one client's key id means nothing to
another client.

Volatile keys occupy one of a fixed number of slots, as in Mbed TLS's slot table; their ids are
``PSA_KEY_ID_VOLATILE_MIN + slot`` (the top of the vendor range). Persistent keys are written to
one file each, atomically: write a temporary file, fsync it, rename it over the final name,
fsync the directory. Only then is the import acknowledged, so a key whose import was
acknowledged survives ``kill -9`` at any moment and a half-written file is never loaded (it never
has a final name; leftovers are deleted at start). Each file carries a SHA-256 of its contents,
so a damaged file is skipped and reported, not loaded.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .. import psa
from ..psa import PsaError, Status
from .keys import KeyMaterial, load_material
from .tfm_crypto import KeyAttributes

DEFAULT_SLOTS = 32
DEFAULT_MAX_PERSISTENT = 256
STORE_FORMAT = 1
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class StoredKey:
    owner: int
    attributes: KeyAttributes
    material: KeyMaterial

    @property
    def id(self) -> int:
        return self.attributes.id

    @property
    def persistent(self) -> bool:
        return psa.lifetime_persistence(self.attributes.lifetime) != psa.PERSISTENCE_VOLATILE


def _checksum(record: dict[str, object]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()


class KeyStore:
    """Thread-safe key table; every method either completes or raises ``PsaError``."""

    def __init__(
        self,
        store_dir: Path,
        slots: int = DEFAULT_SLOTS,
        max_persistent: int = DEFAULT_MAX_PERSISTENT,
        warn: Callable[[str], None] = lambda _line: None,
    ) -> None:
        if slots < 1 or slots > 0x10000:
            raise ValueError("slot count must be between 1 and 65536")
        self.store_dir = store_dir
        self.slot_count = slots
        self.max_persistent = max_persistent
        self.volatile_min = psa.KEY_ID_VENDOR_MAX - slots + 1
        self._slots: list[StoredKey | None] = [None] * slots
        self._persistent: dict[tuple[int, int], StoredKey] = {}
        self._lock = threading.Lock()
        self._warn = warn
        store_dir.mkdir(parents=True, exist_ok=True)
        self._load_persistent()

    # --- queries ------------------------------------------------------------------------------

    def volatile_in_use(self) -> int:
        with self._lock:
            return sum(1 for slot in self._slots if slot is not None)

    def persistent_count(self) -> int:
        with self._lock:
            return len(self._persistent)

    def get(self, owner: int, key_id: int) -> StoredKey:
        with self._lock:
            key = self._find(owner, key_id)
        if key is None:
            raise PsaError(Status.INVALID_HANDLE, f"no key 0x{key_id:08x} for client {owner}")
        return key

    def _find(self, owner: int, key_id: int) -> StoredKey | None:
        if self.volatile_min <= key_id <= psa.KEY_ID_VENDOR_MAX:
            key = self._slots[key_id - self.volatile_min]
            return key if key is not None and key.owner == owner else None
        return self._persistent.get((owner, key_id))

    # --- changes ------------------------------------------------------------------------------

    def add(self, owner: int, attributes: KeyAttributes, material: KeyMaterial) -> StoredKey:
        """Store a new key; its id is allocated (volatile) or taken from the attributes."""
        persistence = psa.lifetime_persistence(attributes.lifetime)
        if psa.lifetime_location(attributes.lifetime) != psa.LOCATION_LOCAL_STORAGE:
            raise PsaError(Status.INVALID_ARGUMENT, "the RSE stores keys only in its own location")
        attributes = replace(attributes, bits=material.bits)
        if persistence == psa.PERSISTENCE_VOLATILE:
            if attributes.id != psa.KEY_ID_NULL:
                raise PsaError(Status.INVALID_ARGUMENT, "a volatile key cannot have an id")
            return self._add_volatile(owner, attributes, material)
        if persistence != psa.PERSISTENCE_DEFAULT:
            raise PsaError(Status.NOT_SUPPORTED, f"persistence level 0x{persistence:02x}")
        if not psa.KEY_ID_USER_MIN <= attributes.id <= psa.KEY_ID_USER_MAX:
            raise PsaError(Status.INVALID_ARGUMENT, f"persistent key id 0x{attributes.id:08x}")
        return self._add_persistent(owner, attributes, material)

    def _add_volatile(
        self, owner: int, attributes: KeyAttributes, material: KeyMaterial
    ) -> StoredKey:
        with self._lock:
            for index, slot in enumerate(self._slots):
                if slot is None:
                    key = StoredKey(
                        owner, replace(attributes, id=self.volatile_min + index), material
                    )
                    self._slots[index] = key
                    return key
        raise PsaError(Status.INSUFFICIENT_MEMORY, f"all {self.slot_count} key slots are in use")

    def _add_persistent(
        self, owner: int, attributes: KeyAttributes, material: KeyMaterial
    ) -> StoredKey:
        key = StoredKey(owner, attributes, material)
        with self._lock:
            if (owner, attributes.id) in self._persistent:
                raise PsaError(Status.ALREADY_EXISTS, f"key 0x{attributes.id:08x} exists")
            if len(self._persistent) >= self.max_persistent:
                raise PsaError(Status.INSUFFICIENT_STORAGE, "persistent key limit reached")
            self._write_key_file(key)
            self._persistent[(owner, attributes.id)] = key
        return key

    def destroy(self, owner: int, key_id: int) -> StoredKey:
        with self._lock:
            key = self._find(owner, key_id)
            if key is None:
                raise PsaError(Status.INVALID_HANDLE, f"no key 0x{key_id:08x} for client {owner}")
            if key.persistent:
                self._remove_key_file(key)
                del self._persistent[(owner, key_id)]
            else:
                self._slots[key_id - self.volatile_min] = None
            return key

    # --- persistence --------------------------------------------------------------------------

    def _path(self, owner: int, key_id: int) -> Path:
        return self.store_dir / f"key-{owner:04x}-{key_id:08x}.json"

    def _write_key_file(self, key: StoredKey) -> None:
        a = key.attributes
        record: dict[str, object] = {
            "format": STORE_FORMAT,
            "owner": key.owner,
            "id": a.id,
            "type": a.type,
            "bits": a.bits,
            "lifetime": a.lifetime,
            "usage": a.usage,
            "alg": a.alg,
            "alg2": a.alg2,
            "data": key.material.data.hex(),
        }
        record["sha256"] = _checksum(record)
        final = self._path(key.owner, a.id)
        tmp = final.with_name(f"{_TMP_PREFIX}{final.name}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps(record, sort_keys=True).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            self._sync_dir()
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            status = (
                Status.INSUFFICIENT_STORAGE
                if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else Status.STORAGE_FAILURE
            )
            raise PsaError(status, f"writing {final.name}: {exc.strerror}") from exc

    def _remove_key_file(self, key: StoredKey) -> None:
        try:
            self._path(key.owner, key.id).unlink()
            self._sync_dir()
        except OSError as exc:
            raise PsaError(Status.STORAGE_FAILURE, f"removing key file: {exc.strerror}") from exc

    def _sync_dir(self) -> None:
        fd = os.open(self.store_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load_persistent(self) -> None:
        for tmp in self.store_dir.glob(f"{_TMP_PREFIX}*"):
            self._warn(f"[ITS] Removing unfinished write {tmp.name}")
            tmp.unlink(missing_ok=True)
        for path in sorted(self.store_dir.glob("key-*.json")):
            try:
                key = self._read_key_file(path)
            except (OSError, ValueError, KeyError, TypeError, PsaError) as exc:
                self._warn(f"[ITS] Ignoring damaged key file {path.name}: {exc}")
                continue
            self._persistent[(key.owner, key.id)] = key

    @staticmethod
    def _read_key_file(path: Path) -> StoredKey:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not a key record")
        expected = record.pop("sha256")
        if _checksum(record) != expected:
            raise ValueError("checksum mismatch")
        if record["format"] != STORE_FORMAT:
            raise ValueError(f"unknown format {record['format']}")
        attributes = KeyAttributes(
            type=record["type"],
            bits=record["bits"],
            lifetime=record["lifetime"],
            usage=record["usage"],
            alg=record["alg"],
            alg2=record["alg2"],
            id=record["id"],
        )
        material = load_material(attributes.type, attributes.bits, bytes.fromhex(record["data"]))
        return StoredKey(int(record["owner"]), attributes, material)
