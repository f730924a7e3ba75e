"""LAVA's own schema, applied to job and test definitions.

LAVA's schema is Debian's ``lava-common`` (not on PyPI), so the check runs in Debian's
``python3`` (``schema_check.py``, standalone); this module gives it the files and reads its
one line per file.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

SCRIPT = Path(__file__).resolve().with_name("schema_check.py")
#: Debian's interpreter, the one its lava-common package installs for.
DEBIAN_PYTHON = "/usr/bin/python3"
KINDS = ("job", "testdef")


class SchemaUnavailable(UserError):
    pass


@dataclass(frozen=True)
class Verdict:
    path: str
    valid: bool
    line: str


def check(kind: str, paths: list[Path]) -> list[Verdict]:
    """Each file's verdict under LAVA's schema for ``kind`` (``job`` or ``testdef``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind}")
    if not paths:
        return []
    if not Path(DEBIAN_PYTHON).exists():
        raise SchemaUnavailable(f"{DEBIAN_PYTHON} is missing: LAVA's schema needs Debian's python3")
    result = subprocess.run(
        [DEBIAN_PYTHON, str(SCRIPT), kind, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode == 2:
        raise SchemaUnavailable(
            (result.stdout + result.stderr).strip() + " (`parsec-demo setup lava` installs it)"
        )
    verdicts = []
    for path, line in zip(paths, result.stdout.splitlines(), strict=False):
        verdicts.append(Verdict(str(path), line == f"{path}: valid", line))
    if len(verdicts) != len(paths):
        raise SchemaUnavailable(f"LAVA's schema check failed: {result.stderr.strip()}")
    return verdicts
