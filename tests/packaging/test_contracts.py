"""The Parsec contracts carry Parsec's own field numbers: checked against a parsec-operations
checkout named by PARSEC_OPERATIONS_DIR (contracts/parsec/README.md names the commit)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts" / "parsec"


def numbered_fields(text: str) -> set[tuple[str, str, int]]:
    """(enclosing message or enum path, name, number) of every field and enum value."""
    text = re.sub(r"//[^\n]*", "", text)
    found: set[tuple[str, str, int]] = set()
    scopes: list[str] = []
    for token in re.finditer(r"(message|enum|oneof)\s+(\w+)\s*\{|\}|([^;{}]+);", text):
        if token.group(1):
            scopes.append(token.group(2))
        elif token.group(0) == "}":
            if scopes:
                scopes.pop()
        else:
            statement = re.sub(r"\s*\[[^\]]*\]", "", " ".join(token.group(3).split()))
            field = re.fullmatch(r"(?:repeated |optional )?(?:[\w.]+ )?(\w+) = (-?\d+)", statement)
            if field and not statement.startswith(("syntax", "package", "import", "option")):
                found.add(("/".join(scopes), field.group(1), int(field.group(2))))
    return found


def test_every_contract_has_fields() -> None:
    contracts = sorted(CONTRACTS.glob("*.proto"))
    assert len(contracts) == 17
    for path in contracts:
        assert numbered_fields(path.read_text()) or path.stem in ("ping", "list_clients"), path


def test_field_numbers_are_parsec_operations() -> None:
    checkout = os.environ.get("PARSEC_OPERATIONS_DIR")
    if not checkout:
        pytest.skip("PARSEC_OPERATIONS_DIR names no parsec-operations checkout")
    upstream = Path(checkout) / "protobuf"
    for path in sorted(CONTRACTS.glob("*.proto")):
        ours = numbered_fields(path.read_text())
        theirs = numbered_fields((upstream / path.name).read_text())
        assert ours <= theirs, f"{path.name}: not in parsec-operations: {sorted(ours - theirs)}"
