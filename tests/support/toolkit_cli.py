"""The toolkit's command line as the tests run it: ``python -m parsec_demo`` by the interpreter
that runs the tests (this checkout's venv)."""

from __future__ import annotations

import sys


def python_command(*args: str) -> list[str]:
    """The command line of ``parsec-demo args...``."""
    return [sys.executable, "-m", "parsec_demo", *args]
