"""Sampling profiles of the project's Python daemons (the Parsec service, the RSE model) with
py-spy, and the table of where their time goes.

``recording`` attaches ``py-spy record`` to a running process for the length of a ``with``
block and writes its samples as collapsed stacks (``frame;frame;... count``, py-spy's ``raw``
format, which speedscope and the flame graph tools read). Only threads holding the GIL are
sampled (``--gil``), so a sample is Python CPU time: at ``rate`` samples per second, each stands
for ``1/rate`` s. ``top_functions`` reads such a file into the functions with the most samples
of their own, with their own and cumulative time per call of the work the profile covered.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from parsec_demo_processes import log_failure, spawn

from .errors import UserError

logger = logging.getLogger(__name__)

#: Samples per second: py-spy's default is 100; more gives a steadier table in a few seconds.
DEFAULT_RATE = 250


class ProfileError(UserError):
    pass


def py_spy() -> str:
    """The py-spy program: the one beside this interpreter (the venv's dev extra pins it),
    else the first on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise ProfileError("py-spy is not installed (pip install 'parsec-demo[dev]' pins it)")
    return found


@contextmanager
def recording(pid: int, output: Path, rate: int = DEFAULT_RATE) -> Iterator[Path]:
    """Samples of process ``pid`` while the block runs, written to ``output`` when it ends;
    py-spy's own messages go to ``output`` with the suffix ``.log``."""
    log_path = output.with_suffix(".log")
    command = [
        py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--gil",
        "--format", "raw", "--output", str(output),
    ]  # fmt: skip
    logger.debug("$ %s", " ".join(command))
    recorder = spawn(command, log_path)
    try:
        yield output
    finally:
        if recorder.poll() is None:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        try:
            status = recorder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()
            status = -1
    if status != 0 or not output.exists():
        headline = f"py-spy could not profile process {pid} (status {status})"
        raise ProfileError(log_failure(headline, log_path))


@dataclass(frozen=True)
class FunctionTime:
    """One function of a profile: where it is, and its samples as time per call (µs)."""

    function: str
    own_us: float
    cumulative_us: float


@dataclass(frozen=True)
class Profile:
    samples: int
    rate: int
    calls: int
    functions: list[FunctionTime]

    @property
    def total_us(self) -> float:
        """Python CPU time (the GIL held) per call."""
        return self.samples / self.rate / self.calls * 1e6


def frame_name(frame: str) -> str:
    """``function (path:line)`` as py-spy writes a frame -> ``path:function``."""
    function, _, location = frame.partition(" (")
    path = location.rstrip(")").rpartition(":")[0]
    return f"{path}:{function}" if path else function


def top_functions(path: Path, calls: int, rate: int, count: int = 10) -> Profile:
    """The ``count`` functions of the collapsed stacks at ``path`` with the most samples of
    their own (where the time is spent, not what called it), over ``calls`` calls; ``rate``
    is the one the stacks were recorded at."""
    if calls <= 0:
        raise ProfileError("a profile needs the number of calls it covered")
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            raise ProfileError(f"{path}:{number}: not a collapsed stack line: {line[:80]!r}")
        frames = [frame_name(f) for f in stack.split(";") if f]
        weight = int(samples)
        total += weight
        own[frames[-1]] += weight
        for name in set(frames):
            cumulative[name] += weight

    def per_call(samples: int) -> float:
        return samples / rate / calls * 1e6

    functions = [
        FunctionTime(name, per_call(samples), per_call(cumulative[name]))
        for name, samples in own.most_common(count)
    ]
    return Profile(total, rate, calls, functions)


def table(profile: Profile) -> Iterator[str]:
    """The profile's functions as a table: own and cumulative µs per call, share of samples."""
    yield f"  {'function (own time)':<62} {'own us':>7} {'cum. us':>8} {'share':>6}"
    for row in profile.functions:
        share = row.own_us / profile.total_us if profile.total_us else 0.0
        name = row.function[:62]
        yield f"  {name:<62} {row.own_us:>7.1f} {row.cumulative_us:>8.1f} {share:>6.1%}"
