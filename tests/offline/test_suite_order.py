"""The suite's own order (tests/conftest.py) names test modules that exist: a module renamed
or removed would otherwise just fall back to the order of collection."""

from __future__ import annotations

from conftest import LONG_WORK, SCOPE_PER_TEST, WORKER_CHAINS
from parsec_demo.paths import PROJECT_ROOT


def test_the_chains_and_the_long_work_name_existing_modules() -> None:
    chained = [module for modules in WORKER_CHAINS.values() for module in modules]
    for module in (*chained, *LONG_WORK, *SCOPE_PER_TEST):
        assert (PROJECT_ROOT / module).is_file(), module
    assert len(set(LONG_WORK)) == len(LONG_WORK), "a module named twice"
    assert len(set(chained)) == len(chained), "a module in two chains"
