"""Where the project keeps what it makes: run directories and build outputs.

Everything lands under the checkout (ignored by git) unless ``PARSEC_DEMO_RUNS`` points
elsewhere, so that a user can find the logs of every run without asking where they went.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def runs_root() -> Path:
    return Path(os.environ.get("PARSEC_DEMO_RUNS", PROJECT_ROOT / "runs"))


def new_run_dir(kind: str) -> Path:
    """A fresh directory ``runs/<kind>-<UTC timestamp>[-n]`` for one run's logs and state."""
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1000):
        candidate = root / (f"{kind}-{stamp}" if n == 0 else f"{kind}-{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"cannot create a run directory under {root}")
