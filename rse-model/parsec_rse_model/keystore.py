"""The RSE model's key store: volatile key slots and persistent keys on disk.

Keys belong to the client that created them (the RSE comms ``client_id``), as TF-M's crypto
service keys belong to the caller's partition or NS client: one client's key id means nothing to
another client.

Volatile keys occupy one of a fixed number of slots, as in Mbed TLS's slot table; their ids are
``PSA_KEY_ID_VOLATILE_MIN + slot`` (the top of the vendor range). Persistent keys are written to
one file each, atomically: write a temporary file, fsync it, rename it over the final name,
fsync the directory. Only then is the import acknowledged, so a key whose import was
acknowledged survives ``kill -9`` at any moment and a half-written file is never loaded (it never
has a final name; leftovers are deleted at start).

Each key file is authenticated with HMAC-SHA256 under a per-store secret, ``store.key``: the
model's stand-in for the hardware unique key from which a real RSE derives its storage keys. The
MAC covers the whole record, owner and id included, and the loader also requires the file's name
to be the one that owner and id give. So whoever can write to the store directory but does not
hold the secret can neither forge nor alter a key, nor move one to another id or client (a copy
or rename of a file is skipped). What the MAC cannot stop is a rollback: an authentic file saved
earlier and put back after its key was destroyed is loaded again, since there is no monotonic
counter to tell an old authentic file from a current one.

The table in memory always follows the disk: an import whose file could not be written leaves
no key, a destroy whose file could not be removed leaves the key, and in both cases the caller
gets ``PSA_ERROR_STORAGE_FAILURE`` (``INSUFFICIENT_STORAGE`` when the disk or quota is full).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from parsec_service import psa
from parsec_service.psa import PsaError, Status
from parsec_service.rse_link.tfm_crypto import KeyAttributes

from .keys import KeyMaterial, load_material

DEFAULT_SLOTS = 32
DEFAULT_MAX_PERSISTENT = 256
#: Format 1 carried a plain SHA-256 (anyone could recompute it); format 2 carries an HMAC.
STORE_FORMAT = 2
SECRET_NAME = "store.key"
SECRET_SIZE = 32
MAC_FIELD = "hmac_sha256"
MAC_CONTEXT = b"parsec-demo RSE key file\x00"
_TMP_PREFIX = ".tmp-"
_RECORD_FIELDS = ("owner", "id", "type", "bits", "lifetime", "usage", "alg", "alg2", "data")


class StoreError(RuntimeError):
    """The store cannot be opened: its secret is missing, unreadable or damaged."""


class _FileLeftBehind(PsaError):
    """An import failed after its file got its final name, and the file could not be taken back."""


class _FileRemovedAnyway(PsaError):
    """A destroy removed the key's file but could not make that durable."""


class _Rejected(ValueError):
    """A key file that is not loaded; ``damaged`` tells a broken file from a misplaced one."""

    def __init__(self, reason: str, damaged: bool = True) -> None:
        super().__init__(reason)
        self.damaged = damaged


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


def key_file_name(owner: int, key_id: int) -> str:
    return f"key-{owner:04x}-{key_id:08x}.json"


def _canonical(record: dict[str, object]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


class KeyStore:
    """Thread-safe key table; every method either completes or raises ``PsaError``.

    The constructor raises ``StoreError`` when the store secret cannot be used.
    """

    def __init__(
        self,
        store_dir: Path,
        slots: int = DEFAULT_SLOTS,
        max_persistent: int = DEFAULT_MAX_PERSISTENT,
        warn: Callable[[str], None] = lambda _line: None,
    ) -> None:
        if slots < 1 or slots > 0x10000:
            raise ValueError("slot count must be between 1 and 65536")
        if max_persistent < 1:
            raise ValueError("the persistent key limit must be at least 1")
        self.store_dir = store_dir
        self.slot_count = slots
        self.max_persistent = max_persistent
        self.volatile_min = psa.KEY_ID_VENDOR_MAX - slots + 1
        self._slots: list[StoredKey | None] = [None] * slots
        self._volatile_used = 0  # slots that are not None (every call's event reports it)
        self._persistent: dict[tuple[int, int], StoredKey] = {}
        self._lock = threading.Lock()
        self._warn = warn
        store_dir.mkdir(parents=True, exist_ok=True)
        self._remove_unfinished_writes()
        self._secret = self._open_secret()
        self._load_persistent()

    # --- queries ------------------------------------------------------------------------------

    def volatile_in_use(self) -> int:
        with self._lock:
            return self._volatile_used

    def persistent_count(self) -> int:
        with self._lock:
            return len(self._persistent)

    def snapshot(self) -> dict[tuple[int, int], StoredKey]:
        """Every key in the table, volatile and persistent, by (owner, key id)."""
        with self._lock:
            table = {(key.owner, key.id): key for key in self._slots if key is not None}
            table.update(self._persistent)
            return table

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
                    self._volatile_used += 1
                    return key
        raise PsaError(
            Status.INSUFFICIENT_MEMORY, f"all {self.slot_count} key slots are in use; raise --slots"
        )

    def _add_persistent(
        self, owner: int, attributes: KeyAttributes, material: KeyMaterial
    ) -> StoredKey:
        key = StoredKey(owner, attributes, material)
        with self._lock:
            if (owner, attributes.id) in self._persistent:
                raise PsaError(Status.ALREADY_EXISTS, f"key 0x{attributes.id:08x} exists")
            if len(self._persistent) >= self.max_persistent:
                self._warn(
                    f"[ITS] Persistent key store full: {self.max_persistent} keys (--max-keys)"
                )
                raise PsaError(
                    Status.INSUFFICIENT_STORAGE,
                    f"persistent key store full at {self.max_persistent} keys; raise --max-keys",
                )
            try:
                self._write_key_file(key)
            except _FileLeftBehind:
                self._persistent[(owner, attributes.id)] = key  # the table follows the disk
                raise
            self._persistent[(owner, attributes.id)] = key
        return key

    def destroy(self, owner: int, key_id: int) -> StoredKey:
        with self._lock:
            key = self._find(owner, key_id)
            if key is None:
                raise PsaError(Status.INVALID_HANDLE, f"no key 0x{key_id:08x} for client {owner}")
            if key.persistent:
                try:
                    self._remove_key_file(key)
                except _FileRemovedAnyway:
                    del self._persistent[(owner, key_id)]  # the table follows the disk
                    raise
                del self._persistent[(owner, key_id)]
            else:
                self._slots[key_id - self.volatile_min] = None
                self._volatile_used -= 1
            return key

    # --- persistence --------------------------------------------------------------------------

    def _path(self, owner: int, key_id: int) -> Path:
        return self.store_dir / key_file_name(owner, key_id)

    def _mac(self, record: dict[str, object]) -> str:
        return hmac.new(self._secret, MAC_CONTEXT + _canonical(record), hashlib.sha256).hexdigest()

    def _storage_error(self, exc: OSError, action: str) -> PsaError:
        """The PSA status for a failed file operation, with its console line."""
        status = (
            Status.INSUFFICIENT_STORAGE
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else Status.STORAGE_FAILURE
        )
        reason = exc.strerror or str(exc)
        self._warn(f"[ITS] Cannot {action}: {reason} -> {psa.status_name(status)}")
        return PsaError(status, f"cannot {action}: {reason}")

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
        record[MAC_FIELD] = self._mac(record)
        final = self._path(key.owner, a.id)
        tmp = final.with_name(f"{_TMP_PREFIX}{final.name}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, json.dumps(record, sort_keys=True).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except OSError as exc:
            self._discard(tmp)
            raise self._storage_error(exc, f"write key file {final.name}") from exc
        try:
            self._sync_dir()
        except OSError as exc:
            # The file has its name, but the name may not outlive a power cut. Take it back, so
            # that the failed import leaves nothing behind.
            error = self._storage_error(exc, f"make key file {final.name} durable")
            try:
                final.unlink()
            except OSError as undo:
                self._warn(
                    f"[ITS] Cannot take back key file {final.name}: {undo.strerror}; "
                    "the key stays in the store"
                )
                raise _FileLeftBehind(error.status, error.detail) from exc
            with contextlib.suppress(OSError):
                self._sync_dir()
            raise error from exc

    def _discard(self, tmp: Path) -> None:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as exc:
            self._warn(
                f"[ITS] Cannot remove unfinished write {tmp.name}: {exc.strerror}; "
                "it is removed at the next start"
            )

    def _remove_key_file(self, key: StoredKey) -> None:
        path = self._path(key.owner, key.id)
        try:
            path.unlink()
        except FileNotFoundError:
            self._warn(f"[ITS] Key file {path.name} was already gone")
        except OSError as exc:
            raise self._storage_error(exc, f"remove key file {path.name}") from exc
        try:
            self._sync_dir()
        except OSError as exc:
            error = self._storage_error(exc, f"make the removal of {path.name} durable")
            raise _FileRemovedAnyway(error.status, error.detail) from exc

    def _sync_dir(self) -> None:
        fd = os.open(self.store_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- start-up -----------------------------------------------------------------------------

    def _remove_unfinished_writes(self) -> None:
        for tmp in self.store_dir.glob(f"{_TMP_PREFIX}*"):
            self._warn(f"[ITS] Removing unfinished write {tmp.name}")
            self._discard(tmp)

    def _open_secret(self) -> bytes:
        path = self.store_dir / SECRET_NAME
        try:
            secret = path.read_bytes()
        except FileNotFoundError:
            return self._create_secret(path)
        except OSError as exc:
            raise StoreError(f"cannot read the store secret {path}: {exc.strerror}") from exc
        if len(secret) != SECRET_SIZE:
            raise StoreError(
                f"the store secret {path} is damaged ({len(secret)} bytes, not {SECRET_SIZE}); "
                "restore it, or move the store aside to start empty"
            )
        return secret

    def _create_secret(self, path: Path) -> bytes:
        authenticated = self._authenticated_files()
        if authenticated:
            raise StoreError(
                f"the store secret {path} is missing but {authenticated} key files need it; "
                "restore it, or move the store aside to start empty"
            )
        secret = secrets.token_bytes(SECRET_SIZE)
        tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, secret)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # unlike a rename, never replaces a secret made meanwhile
            except FileExistsError:
                return self._open_secret()
            finally:
                tmp.unlink()
            self._sync_dir()
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot create the store secret {path}: {exc.strerror}") from exc
        self._warn(f"[ITS] Created the store secret {SECRET_NAME}")
        return secret

    def _authenticated_files(self) -> int:
        """How many key files are in the current format (they cannot be read without the secret)."""
        count = 0
        for path in self.store_dir.glob("key-*.json"):
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("format") == STORE_FORMAT:
                count += 1
        return count

    def _load_persistent(self) -> None:
        for path in sorted(self.store_dir.glob("key-*.json")):
            try:
                key = self._read_key_file(path)
            except _Rejected as exc:
                what = "damaged key file" if exc.damaged else "key file"
                self._warn(f"[ITS] Ignoring {what} {path.name}: {exc}")
                continue
            self._persistent[(key.owner, key.id)] = key
        if len(self._persistent) > self.max_persistent:
            self._warn(
                f"[ITS] The store holds {len(self._persistent)} keys, more than --max-keys "
                f"{self.max_persistent}: new persistent keys are refused until some are destroyed"
            )

    def _read_key_file(self, path: Path) -> StoredKey:
        try:
            record = json.loads(path.read_bytes())
        except OSError as exc:
            raise _Rejected(f"cannot read it: {exc.strerror}") from exc
        except ValueError as exc:
            raise _Rejected("not JSON") from exc
        if not isinstance(record, dict):
            raise _Rejected("not a key record")
        found = record.get("format")
        if found == 1:
            raise _Rejected(
                "store format 1 has no authentication and is not loaded; import the key again",
                damaged=False,
            )
        if found != STORE_FORMAT:
            raise _Rejected(f"unknown format {found!r}")
        mac = record.pop(MAC_FIELD, None)
        if not isinstance(mac, str) or not hmac.compare_digest(self._mac(record), mac):
            raise _Rejected("authentication failed (altered, or not made with this store's secret)")
        # The MAC makes the record ours; the checks below only guard against our own mistakes.
        if set(record) != {"format", *_RECORD_FIELDS} or not all(
            type(record[name]) is int for name in _RECORD_FIELDS if name != "data"
        ):
            raise _Rejected("malformed record")
        owner, key_id = record["owner"], record["id"]
        if path.name != key_file_name(owner, key_id):
            raise _Rejected(
                f"it holds key 0x{key_id:08x} of client 0x{owner:04x}, not the key its name "
                "says (a copied or renamed file)",
                damaged=False,
            )
        attributes = KeyAttributes(
            type=record["type"],
            bits=record["bits"],
            lifetime=record["lifetime"],
            usage=record["usage"],
            alg=record["alg"],
            alg2=record["alg2"],
            id=key_id,
        )
        try:
            material = load_material(
                attributes.type, attributes.bits, bytes.fromhex(record["data"])
            )
        except (PsaError, ValueError, TypeError) as exc:
            raise _Rejected(f"unusable key material: {exc}") from exc
        return StoredKey(owner, attributes, material)
