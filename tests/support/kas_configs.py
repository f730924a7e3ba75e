"""The configurations kas builds from the project's kas files, resolved offline as kas resolves
them: includes first, depth first (paths relative to the including file's repository, with
kas's fallback to the file's own directory), dictionaries merged, later files winning.

Includes from Arm's sw-ref-stack repository (kas/fvp-rd-kronos.yml) are not fetched: their
settings come from the facts in offline/rd1ae_stack.yml, which the check on a real checkout
(PARSEC_DEMO_RD1AE_WORKDIR) proves."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from parsec_demo.paths import PROJECT_ROOT

KAS = PROJECT_ROOT / "kas"
#: Arm's RD-1 AE stack, as far as the project relies on it.
RD1AE_STACK_FACTS = Path(__file__).parents[1] / "offline" / "rd1ae_stack.yml"
#: The repository id Arm's kas fragments give sw-ref-stack.
ARM_REPOSITORY = "sw-ref-stack"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def rd1ae_stack() -> dict[str, Any]:
    return load(RD1AE_STACK_FACTS)


def merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """kas's merge of configuration dictionaries (later files win, dictionaries merge)."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def include_path(including: Path, include: str) -> Path:
    """Where kas finds a plain include of the file ``including``: relative to the repository,
    or (kas's fallback, with a warning) to the file's directory."""
    repository_relative = PROJECT_ROOT / include
    return repository_relative if repository_relative.exists() else including.parent / include


def resolve(path: Path) -> dict[str, Any]:
    """The configuration of one kas file with its includes."""
    config = load(path)
    merged: dict[str, Any] = {}
    for include in config.get("header", {}).get("includes", []):
        if isinstance(include, str):
            merge(merged, resolve(include_path(path, include)))
        elif include["repo"] == ARM_REPOSITORY:
            merge(merged, rd1ae_stack()["fragments"][include["file"]])
        else:
            raise ValueError(f"{path}: an include from an unknown repository: {include}")
    return merge(merged, config)


def combined(config: str) -> dict[str, Any]:
    """The configuration kas builds from ``kas build a.yml:b.yml:...`` (repository paths)."""
    merged: dict[str, Any] = {}
    for name in config.split(":"):
        merge(merged, resolve(PROJECT_ROOT / name))
    return merged
