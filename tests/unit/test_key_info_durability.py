"""Which key info commits are synced to disk before they return (kim's "Durability"): the two a
client's answer rests on (a key becoming active, a key becoming destroying) and no others."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from parsec_service.kim import KeyInfoManager


def _commits_by_sync_mode(trace: list[str]) -> list[tuple[str, str]]:
    """(first word of each change, the synchronous mode it was committed under), in order."""
    mode = "FULL"
    changes = []
    for statement in trace:
        words = statement.split()
        if statement.startswith("PRAGMA synchronous="):
            mode = statement.split("=", 1)[1]
        elif words and words[0] in ("INSERT", "UPDATE", "DELETE"):
            changes.append((" ".join(words[:2]), mode))
    return changes


def test_only_the_commits_an_answer_rests_on_are_synced(tmp_path: Path) -> None:
    kim = KeyInfoManager(tmp_path / "kim.sqlite3")
    trace: list[str] = []
    connection: sqlite3.Connection = kim._db  # white box: the statements SQLite ran
    connection.set_trace_callback(trace.append)
    entry = kim.reserve(1, "app", "key", 3, b"attributes")
    active = kim.activate(entry, b"attributes")
    claimed = kim.claim_destroy(active)
    assert claimed is not None
    kim.remove(claimed)
    assert _commits_by_sync_mode(trace) == [
        ("INSERT INTO", "NORMAL"),  # the creating row
        ("INSERT OR", "NORMAL"),  # the key id counter, in the same transaction
        ("UPDATE keys", "FULL"),  # active: the creation's answer rests on it
        ("UPDATE keys", "FULL"),  # destroying: the destruction's answer rests on it
        ("DELETE FROM", "NORMAL"),  # the finished destruction's row
    ]


def test_unsynced_commits_survive_a_crash_of_the_service(tmp_path: Path) -> None:
    """NORMAL still writes the WAL file: a new process (the service after kill -9) sees them."""
    path = tmp_path / "kim.sqlite3"
    kim = KeyInfoManager(path)
    kim.reserve(1, "app", "creating", 3, b"a")
    done = kim.claim_destroy(kim.activate(kim.reserve(1, "app", "gone", 3, b"a"), b"a"))
    assert done is not None
    kim.remove(done)
    reopened = KeyInfoManager(path)  # the first one is never closed, as after a crash
    assert reopened.has_leftovers()
    assert [(e.name, e.state) for e in reopened.claim_leftovers()] == [("creating", "creating")]
    assert reopened.get(1, "app", "gone") is None
