"""The key info manager: which RSE key stands behind each (authenticator, application, key name).

It lives in SQLite (WAL journal, full sync, one transaction per change), so an acknowledged key
survives ``kill -9`` of the service. Creating and destroying a key are two-phase, because the
key lives in the RSE and the name lives here:

1. a row is committed in state ``creating`` (or moved to ``destroying``) before the RSE call,
2. the RSE call is made,
3. the row becomes ``active`` (or is deleted) in a second transaction.

A crash between 1 and 3 leaves a pending row that names the RSE key id, so reconciliation can
finish the job (destroy the half-created RSE key, complete the destruction) and no RSE key is
ever orphaned. Reads are served from an in-memory copy of the active rows.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from .. import psa

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
    PRIMARY KEY (auth_type, app, key_name)
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_by_id ON keys (provider_id, key_id);
"""


class KeyExists(Exception):
    pass


@dataclass(frozen=True)
class KeyEntry:
    auth_type: int
    app: str
    name: str
    provider_id: int
    key_id: int
    attributes: bytes
    state: str

    @property
    def owner(self) -> tuple[int, str, str]:
        return (self.auth_type, self.app, self.name)


class KeyInfoManager:
    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.db_path = db_path
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._active: dict[tuple[int, str, str], KeyEntry] = {}
        for entry in self._select("SELECT * FROM keys WHERE state = 'active'"):
            self._active[entry.owner] = entry

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, sql: str, params: tuple[object, ...] = ()) -> list[KeyEntry]:
        rows = self._db.execute(
            sql.replace(
                "SELECT *",
                "SELECT auth_type, app, key_name, provider_id, key_id, attributes, state",
            ),
            params,
        ).fetchall()
        return [KeyEntry(a, b, c, d, e, bytes(f), g) for a, b, c, d, e, f, g in rows]

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

    def pending(self) -> list[KeyEntry]:
        with self._lock:
            return self._select("SELECT * FROM keys WHERE state != 'active'")

    # --- two-phase changes --------------------------------------------------------------------

    def begin_create(
        self, auth_type: int, app: str, name: str, provider_id: int, attributes: bytes
    ) -> int:
        """Commit a ``creating`` row with a fresh RSE key id; KeyExists if the name is taken."""
        with self._lock:
            key_id = self._free_key_id(provider_id)
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.execute(
                        "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, 'creating')",
                        (auth_type, app, name, provider_id, key_id, attributes),
                    )
            except sqlite3.IntegrityError as exc:
                raise KeyExists(name) from exc
            return key_id

    def _free_key_id(self, provider_id: int) -> int:
        (highest,) = self._db.execute(
            "SELECT MAX(key_id) FROM keys WHERE provider_id = ?", (provider_id,)
        ).fetchone()
        candidate = (highest or 0) + 1
        if candidate <= psa.KEY_ID_USER_MAX:
            return int(candidate)
        used = {
            row[0]
            for row in self._db.execute(
                "SELECT key_id FROM keys WHERE provider_id = ?", (provider_id,)
            )
        }
        for key_id in range(psa.KEY_ID_USER_MIN, psa.KEY_ID_USER_MAX + 1):
            if key_id not in used:
                return key_id
        raise RuntimeError("no free key id")  # pragma: no cover - a billion keys

    def commit_create(self, auth_type: int, app: str, name: str, attributes: bytes) -> KeyEntry:
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "UPDATE keys SET state = 'active', attributes = ? "
                    "WHERE auth_type = ? AND app = ? AND key_name = ? AND state = 'creating'",
                    (attributes, auth_type, app, name),
                )
            (entry,) = self._select(
                "SELECT * FROM keys WHERE auth_type = ? AND app = ? AND key_name = ?",
                (auth_type, app, name),
            )
            self._active[entry.owner] = entry
            return entry

    def begin_destroy(self, entry: KeyEntry) -> None:
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "UPDATE keys SET state = 'destroying' "
                    "WHERE auth_type = ? AND app = ? AND key_name = ?",
                    entry.owner,
                )
            self._active.pop(entry.owner, None)

    def remove(self, entry: KeyEntry) -> None:
        """Delete the row: an aborted creation, or a finished destruction."""
        with self._lock:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "DELETE FROM keys WHERE auth_type = ? AND app = ? AND key_name = ?",
                    entry.owner,
                )
            self._active.pop(entry.owner, None)

    def entry(self, auth_type: int, app: str, name: str) -> KeyEntry | None:
        """The row in any state (for aborting a creation)."""
        with self._lock:
            rows = self._select(
                "SELECT * FROM keys WHERE auth_type = ? AND app = ? AND key_name = ?",
                (auth_type, app, name),
            )
        return rows[0] if rows else None
