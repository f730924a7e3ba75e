"""What the RSE model's key store holds on disk, read from its file names."""

from __future__ import annotations

import re
from pathlib import Path

from parsec_rse_model.keystore import SECRET_NAME
from parsec_service.directory_lock import LOCK_NAME

KEY_FILE_NAME = re.compile(r"key-([0-9a-f]{4})-([0-9a-f]{8})\.json")


def key_files(store_dir: Path) -> set[tuple[int, int]]:
    """(owner, id) of every key file; any other file but the secret and the model's lock fails
    the test."""
    found = set()
    for path in store_dir.iterdir():
        if path.name in (SECRET_NAME, LOCK_NAME):
            continue
        match = KEY_FILE_NAME.fullmatch(path.name)
        assert match, f"unexpected file {path.name} in the store"
        found.add((int(match[1], 16), int(match[2], 16)))
    return found
