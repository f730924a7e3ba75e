"""What the layer's oeqa cases need from openembedded-core's oeqa, for runs without Yocto.

Installed as the modules ``oeqa.runtime.case``, ``oeqa.core.decorator.depends``,
``oeqa.core.decorator.oetimeout``, ``oeqa.core.decorator.data`` and
``oeqa.runtime.decorator.package``, with the same names and meanings as oeqa's: the test case
base with ``self.target`` and ``self.td``; ``OETestDepends`` (a test runs only after its
dependencies passed); ``OETimeout`` (seconds, enforced with SIGALRM); skip decorators on test
data and on image packages. When a real openembedded-core is given, none of this is used.
"""

from __future__ import annotations

import sys
import types
import unittest
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

F = Callable[..., Any]


class OETestCase(unittest.TestCase):
    td: ClassVar[dict[str, Any]] = {}
    target: ClassVar[Any] = None
    tc: ClassVar[Any] = None


class OERuntimeTestCase(OETestCase):
    pass


def OETestDepends(depends: Iterable[str]) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        function._oeqa_depends = list(depends)  # type: ignore[attr-defined]
        return function

    return decorate


def OETimeout(seconds: int) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        function._oeqa_timeout = seconds  # type: ignore[attr-defined]
        return function

    return decorate


def _skip_unless(condition: Callable[[OETestCase], bool], reason: str) -> Callable[[F], F]:
    def decorate(function: F) -> F:
        def wrapper(self: OETestCase, *args: Any, **kwargs: Any) -> Any:
            if not condition(self):
                self.skipTest(reason)
            return function(self, *args, **kwargs)

        wrapper.__name__ = function.__name__
        wrapper.__doc__ = function.__doc__
        wrapper.__dict__.update(function.__dict__)
        return wrapper

    return decorate


def OEHasPackage(packages: Iterable[str]) -> Callable[[F], F]:
    wanted = [packages] if isinstance(packages, str) else list(packages)

    def present(case: OETestCase) -> bool:
        installed = set(case.td.get("IMAGE_PKGS", ()))
        return any(p in installed for p in wanted)

    return _skip_unless(present, f"none of {', '.join(wanted)} is in the image")


def skipIfDataVar(var: str, value: str, msg: str) -> Callable[[F], F]:
    return _skip_unless(lambda c: c.td.get(var) != value, msg)


def skipIfNotDataVar(var: str, value: str, msg: str) -> Callable[[F], F]:
    return _skip_unless(lambda c: c.td.get(var) == value, msg)


def skipIfNotFeature(value: str, msg: str) -> Callable[[F], F]:
    def has(case: OETestCase) -> bool:
        features = f"{case.td.get('DISTRO_FEATURES', '')} {case.td.get('IMAGE_FEATURES', '')}"
        return value in features.split()

    return _skip_unless(has, msg)


def skipIfQemu(msg: str = "not on QEMU") -> Callable[[F], F]:
    return _skip_unless(lambda c: not str(c.td.get("MACHINE", "")).startswith("qemu"), msg)


def skipIfNotQemu(msg: str = "only on QEMU") -> Callable[[F], F]:
    return _skip_unless(lambda c: str(c.td.get("MACHINE", "")).startswith("qemu"), msg)


def install(layer_lib: Path) -> None:
    """Make ``import oeqa...`` find this shim, and the layer's own oeqa modules under
    ``layer_lib`` (its base case beside ``oeqa.runtime.case``), as oeqa's namespace packages
    would under testimage."""
    modules: dict[str, dict[str, object]] = {
        "oeqa": {},
        "oeqa.core": {},
        "oeqa.core.case": {"OETestCase": OETestCase},
        "oeqa.core.decorator": {},
        "oeqa.core.decorator.depends": {"OETestDepends": OETestDepends},
        "oeqa.core.decorator.oetimeout": {"OETimeout": OETimeout},
        "oeqa.core.decorator.data": {
            "skipIfDataVar": skipIfDataVar,
            "skipIfNotDataVar": skipIfNotDataVar,
            "skipIfNotFeature": skipIfNotFeature,
            "skipIfQemu": skipIfQemu,
            "skipIfNotQemu": skipIfNotQemu,
        },
        "oeqa.runtime": {},
        "oeqa.runtime.case": {"OERuntimeTestCase": OERuntimeTestCase},
        "oeqa.runtime.cases": {},
        "oeqa.runtime.decorator": {},
        "oeqa.runtime.decorator.package": {"OEHasPackage": OEHasPackage},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name, "parsec-demo's stand-in for oeqa")
        # A package, so that submodules import: the layer's, where it has that directory.
        directory = layer_lib.joinpath(*name.split("."))
        module.__path__ = [str(directory)] if directory.is_dir() else []
        for key, value in attributes.items():
            setattr(module, key, value)
        sys.modules[name] = module
