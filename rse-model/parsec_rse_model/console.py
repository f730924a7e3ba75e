"""The RSE model's two logs: a console like the RSE's UART, and JSON lines of facts.

The console is for people: one line per event, in the style of TF-M's RSE comms debug traces
(``[RSE-COMMS] Received message: ...``, ``[Crypto] psa_verify_hash: ... -> PSA_SUCCESS``).
The JSON lines are for programs: one object per crypto call with the time, function, key, algorithm,
status, duration and slot occupancy, so that tests and the demo summary read facts, not prose.
Both are flushed line by line because other processes read them while the model runs.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

#: One encoder for every event (``json.dumps`` with options builds a new one per call).
_EVENT_ENCODER = json.JSONEncoder(sort_keys=True)


class RseLog:
    def __init__(self, console_path: Path | None, events_path: Path | None) -> None:
        self._lock = threading.Lock()
        self._console: IO[str] = (
            open(console_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives with the log
            if console_path
            else sys.stdout
        )
        self._owns_console = console_path is not None
        self._events: IO[str] | None = (
            open(events_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives with the log
            if events_path
            else None
        )

    def console(self, line: str) -> None:
        with self._lock:
            self._console.write(line + "\n")
            self._console.flush()

    def console_lines(self, lines: list[str]) -> None:
        """Several lines in one write, so that one message's lines stay together."""
        if not lines:
            return
        with self._lock:
            self._console.write("".join(line + "\n" for line in lines))
            self._console.flush()

    def event(self, record: dict[str, Any]) -> None:
        if self._events is None:
            return
        line = _EVENT_ENCODER.encode({"time": round(time.time(), 6), **record}) + "\n"
        with self._lock:
            self._events.write(line)
            self._events.flush()

    def close(self) -> None:
        with self._lock:
            if self._owns_console:
                self._console.close()
            if self._events is not None:
                self._events.close()
                self._events = None
