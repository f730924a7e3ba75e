"""The last lines of a log, and the one shape of a failure that shows them.

Whatever fails (a service during start-up, ssl_server, a machine's boot), its message is the
headline, then ``last console lines:`` with the last lines of what the failing thing wrote,
then ``logs:`` with the path of every log worth reading, the console's first::

    rse exited with status 1 during start-up
    last console lines:
    [RSE] Cannot open the key store: ...
    logs:
      runs/demo-host-.../rse-process.log
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: How many lines a failure shows.
TAIL_LINES = 30
#: A kernel panic's register dump and call trace fill a tail by themselves; what made the
#: kernel panic is printed just before it. So a tail that would leave out any of the
#: PANIC_CONTEXT lines before a panic report starts with them (at most MAX_TAIL_LINES in all).
PANIC = "Kernel panic - not syncing"
PANIC_CONTEXT = 3
MAX_TAIL_LINES = 80


def last_lines(text: str, lines: int = TAIL_LINES) -> str:
    all_lines = text.splitlines()
    start = max(0, len(all_lines) - lines)
    panics = [n for n, line in enumerate(all_lines[: start + PANIC_CONTEXT]) if PANIC in line]
    if panics:
        start = max(min(start, panics[-1] - PANIC_CONTEXT), len(all_lines) - MAX_TAIL_LINES, 0)
    return "\n".join(all_lines[start:])


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of the file at ``path``; empty if it is missing or unreadable."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return last_lines(text, lines)


def failure_message(headline: str, console: str, logs: Sequence[Path | str]) -> str:
    """``headline``, the last lines of ``console`` (text), and the ``logs`` to read."""
    shown = last_lines(console).rstrip("\n") or "(none)"
    listing = "\n".join(f"  {log}" for log in logs)
    return f"{headline}\nlast console lines:\n{shown}\nlogs:\n{listing}"


def log_failure(headline: str, console: Path, logs: Sequence[Path] = ()) -> str:
    """``failure_message`` with the console read from the file ``console``, listed first."""
    listing = [console, *(log for log in logs if log != console)]
    return failure_message(headline, tail(console), listing)
