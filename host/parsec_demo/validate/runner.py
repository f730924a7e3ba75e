"""Loading and running oeqa runtime case files with the shim: dependencies, timeouts, results.

Tests run in an order where each comes after the tests it depends on (otherwise in the order
the files define them); a test whose dependency did not pass is skipped and says which.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import signal
import sys
import time
import traceback
import unittest
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType, SimpleNamespace
from typing import Any

from ..errors import UserError
from ..paths import layer_lib

#: One line per test as it ends (``PASSED name (1.2 s)``), and per skip.
logger = logging.getLogger(__name__)


def cases_dir() -> Path:
    """The layer's oeqa runtime cases (in the project's checkout)."""
    return layer_lib() / "oeqa/runtime/cases"


class CaseSelectionError(UserError):
    pass


@dataclass
class CaseResult:
    name: str
    status: str  # PASSED, FAILED, ERROR, SKIPPED (oeqa's words)
    duration: float
    log: str = ""
    started: float = 0.0
    ended: float = 0.0
    attachments: dict[str, str] = field(default_factory=dict)


def load_module(path: Path) -> ModuleType:
    name = f"oeqa.runtime.cases.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def case_modules(directory: Path) -> list[str]:
    """The names of the case modules in ``directory`` (its ``*.py`` files but ``_*``)."""
    return sorted(p.stem for p in directory.glob("*.py") if not p.name.startswith("_"))


def check_modules(directory: Path, modules: Sequence[str] | None) -> None:
    """A CaseSelectionError naming the first of ``modules`` that ``directory`` lacks."""
    known = case_modules(directory)
    for name in modules or ():
        if name not in known:
            raise CaseSelectionError(
                f"no case module {name!r} in {directory} (there are: {', '.join(known)})"
            )


def collect(directory: Path, modules: Sequence[str] | None = None) -> list[unittest.TestCase]:
    """The tests of the case files in ``directory`` (only ``modules``, if given)."""
    from .oeqa_shim import OERuntimeTestCase

    tests: list[unittest.TestCase] = []
    for name in case_modules(directory):
        if modules and name not in modules:
            continue
        module = load_module(directory / f"{name}.py")
        classes = [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, OERuntimeTestCase) and cls.__module__ == module.__name__
        ]
        classes.sort(key=lambda cls: inspect.getsourcelines(cls)[1])
        for cls in classes:
            methods = [
                (inspect.getsourcelines(member)[1], name)
                for name, member in inspect.getmembers(cls, inspect.isfunction)
                if name.startswith("test")
            ]
            tests += [cls(name) for _, name in sorted(methods)]
    return tests


def test_name(test: unittest.TestCase) -> str:
    cls = type(test)
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}.{test._testMethodName}"


def _attribute(test: unittest.TestCase, name: str) -> Any:
    return getattr(getattr(test, test._testMethodName), name, None)


def order(tests: list[unittest.TestCase]) -> list[unittest.TestCase]:
    """Dependencies first, otherwise the order of definition."""
    by_name = {test_name(t): t for t in tests}
    ordered: list[unittest.TestCase] = []
    placed: set[str] = set()

    def place(test: unittest.TestCase, path: tuple[str, ...]) -> None:
        name = test_name(test)
        if name in placed:
            return
        if name in path:
            raise ValueError(f"dependency cycle: {' -> '.join((*path, name))}")
        for dependency in _attribute(test, "_oeqa_depends") or []:
            if dependency in by_name:
                place(by_name[dependency], (*path, name))
        placed.add(name)
        ordered.append(test)

    for test in tests:
        place(test, ())
    return ordered


class _Outcome(unittest.TestResult):
    pass


def _timeout_handler(seconds: int) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the test took longer than its OETimeout of {seconds} s")

    return handler


def run_tests(
    tests: list[unittest.TestCase],
    target: Any,
    td: dict[str, Any],
    context: Any = None,
) -> list[CaseResult]:
    """Run ``tests`` against ``target``. ``context``: the test context (oeqa's ``tc``), where
    the cases keep their extra results; a fresh one by default."""
    results: dict[str, CaseResult] = {}
    context = context if context is not None else SimpleNamespace()
    for test in order(tests):
        name = test_name(test)
        setattr(type(test), "target", target)  # noqa: B010 - the class, as oeqa sets it
        setattr(type(test), "td", td)  # noqa: B010
        setattr(type(test), "tc", context)  # noqa: B010
        missing = [
            d for d in _attribute(test, "_oeqa_depends") or []
            if results.get(d) is None or results[d].status != "PASSED"
        ]  # fmt: skip
        if missing:
            results[name] = CaseResult(
                name, "SKIPPED", 0.0, f"dependency {missing[0]} did not pass"
            )
            logger.info(f"SKIPPED {name}: dependency {missing[0]} did not pass")
            continue
        timeout = _attribute(test, "_oeqa_timeout")
        outcome = _Outcome()
        started = time.time()
        previous = None
        if timeout:
            previous = signal.signal(signal.SIGALRM, _timeout_handler(int(timeout)))
            signal.alarm(int(timeout))
        try:
            unittest.TestSuite([test]).run(outcome)
        finally:
            if timeout:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, previous)
        ended = time.time()
        if outcome.errors:
            status, detail = "ERROR", outcome.errors[0][1]
        elif outcome.failures:
            status, detail = "FAILED", outcome.failures[0][1]
        elif outcome.skipped:
            status, detail = "SKIPPED", outcome.skipped[0][1]
        else:
            status, detail = "PASSED", ""
        results[name] = CaseResult(name, status, round(ended - started, 2), detail, started, ended)
        logger.info(f"{status} {name} ({ended - started:.1f} s)")
    return list(results.values())


def format_exception() -> str:
    return traceback.format_exc()
