"""The key info manager: which RSE key stands behind each (authenticator, application, key name).

It lives in SQLite (WAL journal, one transaction per change), so an acknowledged key survives
``kill -9`` of the service. Creating and destroying a key are two-phase, because the key lives
in the RSE and the name lives here:

1. a row is committed in state ``creating`` (or moved from ``active`` to ``destroying``) before
   the RSE call; the request that did so *holds* the row,
2. the RSE call is made,
3. the row becomes ``active`` (or is deleted) in a second transaction, and is released.

Concurrency. Every change is one short transaction under one lock, and each step names the row
by its owner *and* its key id and checks its state, so a step can only move a row that its own
request holds. Two requests for one name are ordered by the table's primary key: the second
``reserve`` finds the row and gets ``KeyExists``; a second ``claim_destroy`` finds no active row
and gets ``None``. Requests for different names never wait for each other beyond one
transaction. Key ids come from a counter stored in the same database and only ever move up, so
an id is never handed out twice, not even after its key was destroyed (a request still using an
old id can only reach a destroyed key, never somebody's new one).

Recovery. A pending row that no live request holds is a leftover: a crash between 1 and 3, or an
RSE call whose outcome is unknown (the link failed). ``claim_leftovers`` hands such rows to one
settler at a time, never rows that a request in flight holds; at start every pending row is a
leftover. The settler destroys the RSE key if present and deletes the row, so no RSE key is ever
orphaned and no acknowledged key is lost, at any crash point.

Durability. Every commit survives the service's crash (it is in the WAL file). Against a power
cut, the two commits a client's answer rests on, a key becoming ``active`` and a key becoming
``destroying``, are synced (``synchronous=FULL``) before the answer. The other two are not
synced of their own (``NORMAL``; the next synced commit carries them): a lost ``creating`` row
leaves at most an RSE key at an id the reverted counter hands out again, where it is found and
destroyed as an orphan; a lost deletion leaves a ``destroying`` row, settled at start. So a
creation and a destruction each cost one sync here instead of two.

Temporary keys. A row may name the process that owns it (``process``: see ``processes``);
such a key is that process's alone and is reclaimed once the process is gone. Rows without a
process are ordinary keys, kept until their application destroys them.

Per-application quotas count every row of the application, pending ones included, so that
overlapping creations cannot pass the quota together. Reads are served from an in-memory copy of
the active rows. Database failures (a full disk, a read-only file) surface as ``StorageError``
with the PSA status to answer; nothing in memory changes unless the database did.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from . import psa
from .admission import Admission, info_size
from .config import ConfigError
from .psa import Status

log = logging.getLogger("parsec")

CREATING = "creating"
ACTIVE = "active"
DESTROYING = "destroying"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    auth_type   INTEGER NOT NULL,
    app         TEXT    NOT NULL,
    key_name    TEXT    NOT NULL,
    provider_id INTEGER NOT NULL,
    key_id      INTEGER NOT NULL,
    attributes  BLOB    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('creating', 'active', 'destroying')),
    process     TEXT,
    PRIMARY KEY (auth_type, app, key_name)
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_by_id ON keys (provider_id, key_id);
CREATE TABLE IF NOT EXISTS key_id_counter (
    provider_id INTEGER PRIMARY KEY,
    next_id     INTEGER NOT NULL
);
"""

Owner = tuple[int, str, str]


class KeyExists(Exception):
    pass


class StorageError(Exception):
    """The database refused a change; ``status`` is the PSA status to answer with."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True)
class KeyEntry:
    auth_type: int
    app: str
    name: str
    provider_id: int
    key_id: int
    attributes: bytes
    state: str
    process: str | None = None

    @property
    def owner(self) -> Owner:
        return (self.auth_type, self.app, self.name)


class StateDirectoryError(ConfigError):
    """The directory for the key info database is not the service's own."""


def own_directory(path: Path) -> None:
    """Make ``path`` for the service's user alone (mode 0700), or accept one that is already
    the service's: owned by its user and writable by nobody else. A directory the service did
    not create is never changed; one that others may write to (``/tmp``, a shared group
    directory) or that another user owns is refused."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)  # what the umask took away; the service made this directory
        return
    info = path.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirectoryError(f"key info directory {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise StateDirectoryError(
            f"key info directory {path} belongs to uid {info.st_uid}, not to the service's "
            f"uid {os.geteuid()}: give the service a directory of its own"
        )
    if mode & 0o022:
        raise StateDirectoryError(
            f"key info directory {path} is writable by others (mode {mode:04o}): give the "
            "service a directory of its own"
        )


class KeyInfoManager:
    def __init__(self, db_path: Path) -> None:
        own_directory(db_path.parent)
        self.db_path = db_path
        # The file exists with mode 0600 before SQLite opens it; its -wal and -shm files take
        # the same mode from it.
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(db_path, 0o600)
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._synced = True
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(keys)")}
        if "process" not in columns:  # a database from before temporary keys
            self._db.execute("ALTER TABLE keys ADD COLUMN process TEXT")
        self._lock = threading.Lock()
        self._active: dict[Owner, KeyEntry] = {}
        self._rows_per_app: Counter[tuple[int, str]] = Counter()
        self._bytes_per_app: Counter[tuple[int, str]] = Counter()
        self._held: set[Owner] = set()
        self._leftovers = 0
        self._rows = 0  # of every application
        for entry in self._select("SELECT * FROM keys"):
            self._rows += 1
            self._count(entry, 1)
            if entry.state == ACTIVE:
                self._active[entry.owner] = entry
            else:
                self._leftovers += 1

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, sql: str, params: tuple[object, ...] = ()) -> list[KeyEntry]:
        rows = self._db.execute(
            sql.replace(
                "SELECT *",
                "SELECT auth_type, app, key_name, provider_id, key_id, attributes, state, process",
            ),
            params,
        ).fetchall()
        return [KeyEntry(a, b, c, d, e, bytes(f), g, h) for a, b, c, d, e, f, g, h in rows]

    def _transaction(
        self, statements: list[tuple[str, tuple[object, ...]]], synced: bool = True
    ) -> list[int]:
        """Run ``statements`` in one transaction; returns each one's row count. ``synced``: the
        commit is on disk before this returns (else only in the WAL file). Lock held."""
        try:
            if synced != self._synced:
                self._db.execute(f"PRAGMA synchronous={'FULL' if synced else 'NORMAL'}")
                self._synced = synced
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                return [self._db.execute(sql, params).rowcount for sql, params in statements]
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            full = code == sqlite3.SQLITE_FULL or "full" in str(exc)
            status = Status.INSUFFICIENT_STORAGE if full else Status.STORAGE_FAILURE
            log.error("key info database %s: %s", self.db_path, exc)
            raise StorageError(status, f"key info database: {exc}") from exc

    def _count(self, entry: KeyEntry, sign: int) -> None:
        """Add (1) or take away (-1) the entry from its application's allowance. Lock held."""
        self._rows_per_app[(entry.auth_type, entry.app)] += sign
        self._bytes_per_app[(entry.auth_type, entry.app)] += sign * info_size(
            entry.name, entry.attributes
        )

    # --- reads --------------------------------------------------------------------------------

    def get(self, auth_type: int, app: str, name: str) -> KeyEntry | None:
        with self._lock:
            return self._active.get((auth_type, app, name))

    def keys_of(self, auth_type: int, app: str) -> list[KeyEntry]:
        with self._lock:
            entries = [e for e in self._active.values() if (e.auth_type, e.app) == (auth_type, app)]
        return sorted(entries, key=lambda e: e.name)

    def clients(self, auth_type: int) -> list[str]:
        with self._lock:
            return sorted({e.app for e in self._active.values() if e.auth_type == auth_type})

    def temporary(self) -> list[KeyEntry]:
        """The active temporary keys (of every application)."""
        with self._lock:
            return [e for e in self._active.values() if e.process is not None]

    def has_leftovers(self) -> bool:
        with self._lock:
            return self._leftovers > 0

    # --- creation -----------------------------------------------------------------------------

    def reserve(
        self,
        auth_type: int,
        app: str,
        name: str,
        provider_id: int,
        attributes: bytes,
        admission: Admission | None = None,
        process: str | None = None,
    ) -> KeyEntry:
        """Commit a held ``creating`` row with a fresh key id (``process``: a temporary key's
        owner).

        KeyExists if the name is taken (in any state), QuotaExceeded if ``admission`` refuses
        another key (every row counts, pending ones too), StorageError if the database
        refuses.
        """
        with self._lock:
            if admission is not None:
                refusal = admission.refusal(
                    app,
                    self._rows_per_app[(auth_type, app)],
                    self._bytes_per_app[(auth_type, app)],
                    info_size(name, attributes),
                    self._rows,
                )
                if refusal is not None:
                    raise refusal
            key_id = self._next_key_id(provider_id)
            try:
                self._transaction(
                    [
                        (
                            "INSERT INTO keys (auth_type, app, key_name, provider_id, key_id, "
                            "attributes, state, process) VALUES (?, ?, ?, ?, ?, ?, 'creating', ?)",
                            (auth_type, app, name, provider_id, key_id, attributes, process),
                        ),
                        (
                            "INSERT OR REPLACE INTO key_id_counter VALUES (?, ?)",
                            (provider_id, key_id + 1),
                        ),
                    ],
                    synced=False,
                )
            except sqlite3.IntegrityError as exc:
                raise KeyExists(name) from exc
            entry = KeyEntry(
                auth_type, app, name, provider_id, key_id, attributes, CREATING, process
            )
            self._count(entry, 1)
            self._rows += 1
            self._held.add(entry.owner)
            return entry

    def _next_key_id(self, provider_id: int) -> int:
        """The counter's value, never below an id in use (a database from before the counter)."""
        row = self._db.execute(
            "SELECT next_id FROM key_id_counter WHERE provider_id = ?", (provider_id,)
        ).fetchone()
        (highest,) = self._db.execute(
            "SELECT MAX(key_id) FROM keys WHERE provider_id = ?", (provider_id,)
        ).fetchone()
        candidate = max(row[0] if row else psa.KEY_ID_USER_MIN, (highest or 0) + 1)
        if candidate <= psa.KEY_ID_USER_MAX:
            return int(candidate)
        raise StorageError(Status.INSUFFICIENT_STORAGE, "every persistent key id has been used")

    def activate(self, entry: KeyEntry, attributes: bytes) -> KeyEntry:
        """Make a held ``creating`` row active and release it."""
        with self._lock:
            (changed,) = self._transaction(
                [
                    (
                        "UPDATE keys SET state = 'active', attributes = ? WHERE auth_type = ? "
                        "AND app = ? AND key_name = ? AND key_id = ? AND state = 'creating'",
                        (attributes, *entry.owner, entry.key_id),
                    )
                ]
            )
            if changed != 1:  # pragma: no cover - only the holder moves a held row
                raise StorageError(Status.CORRUPTION_DETECTED, f"key {entry.name!r} vanished")
            active = replace(entry, attributes=attributes, state=ACTIVE)
            self._count(entry, -1)
            self._count(active, 1)
            self._active[active.owner] = active
            self._held.discard(active.owner)
            return active

    # --- destruction --------------------------------------------------------------------------

    def claim_destroy(self, entry: KeyEntry) -> KeyEntry | None:
        """Move the active row to ``destroying`` and hold it; None if it is no longer active."""
        with self._lock:
            (changed,) = self._transaction(
                [
                    (
                        "UPDATE keys SET state = 'destroying' WHERE auth_type = ? AND app = ? "
                        "AND key_name = ? AND key_id = ? AND state = 'active'",
                        (*entry.owner, entry.key_id),
                    )
                ]
            )
            if changed != 1:
                return None
            self._active.pop(entry.owner, None)
            self._held.add(entry.owner)
            return replace(entry, state=DESTROYING)

    def remove(self, entry: KeyEntry) -> None:
        """Delete a held pending row (an aborted creation, a finished destruction), release it."""
        with self._lock:
            self._transaction(
                [
                    (
                        "DELETE FROM keys WHERE auth_type = ? AND app = ? AND key_name = ? "
                        "AND key_id = ? AND state = ?",
                        (*entry.owner, entry.key_id, entry.state),
                    )
                ],
                synced=False,
            )
            self._count(entry, -1)
            self._rows -= 1
            self._held.discard(entry.owner)

    def abandon(self, entry: KeyEntry) -> None:
        """Release a held pending row whose outcome is unknown: it becomes a leftover."""
        with self._lock:
            if entry.owner in self._held:
                self._held.discard(entry.owner)
                self._leftovers += 1

    # --- recovery -----------------------------------------------------------------------------

    def claim_leftovers(self) -> list[KeyEntry]:
        """Hold and return the pending rows no request holds (at start: all pending rows)."""
        with self._lock:
            rows = [
                e
                for e in self._select("SELECT * FROM keys WHERE state != 'active'")
                if e.owner not in self._held
            ]
            self._held.update(e.owner for e in rows)
            self._leftovers = 0
            return rows
