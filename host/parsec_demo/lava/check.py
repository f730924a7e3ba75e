"""LAVA's own schema, applied to job definitions, test definitions and device dictionaries.

LAVA's schema is Debian's ``lava-common`` (not on PyPI), so the check runs in Debian's
``python3`` (``schema_check.py``, standalone); this module gives it the files and reads its
one line per file. A device dictionary is rendered first with lava-server's own device-type
templates, taken from Debian's ``lava-server`` package (downloaded once into the build
directory and unpacked, not installed: only its templates are needed).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..paths import cache_root, layer_module

SCRIPT = Path(__file__).resolve().with_name("schema_check.py")
#: Debian's interpreter, the one its lava-common package installs for.
DEBIAN_PYTHON = "/usr/bin/python3"
KINDS = ("job", "testdef", "device")


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
    templates = [str(lava_server_templates())] if kind == "device" else []
    result = _schema_check(kind, *templates, *map(str, paths))
    if result.returncode == 2:
        raise SchemaUnavailable(
            (result.stdout + result.stderr).strip() + " (`parsec-demo setup lava` installs it)"
        )
    verdicts = []
    for path, line in zip(paths, result.stdout.splitlines(), strict=False):
        valid = line == f"{path}: valid"
        problem = unreachable_address(path) if valid and kind == "job" else ""
        if problem:
            valid, line = False, f"{path}: invalid: {problem}"
        verdicts.append(Verdict(str(path), valid, line))
    if len(verdicts) != len(paths):
        raise SchemaUnavailable(f"LAVA's schema check failed: {result.stderr.strip()}")
    return verdicts


def unreachable_address(job_file: Path) -> str:
    """What in the job ``job_file`` a farm cannot reach, or "": a test definition repository
    that is a path on this machine, or a repository, image URL or docker registry on a host
    that cannot be real (an example or test domain, RFC 2606)."""
    source = layer_module("parsec_demo_source")
    job = yaml.safe_load(job_file.read_text())
    for action in job.get("actions", []) if isinstance(job, dict) else []:
        for definition in (action.get("test") or {}).get("definitions", []):
            repository = str(definition.get("repository", ""))
            host = source.split_remote(repository)[1]
            if definition.get("from") == "git" and not host:
                return (
                    f"the test definition's repository {repository} is no network address a "
                    "LAVA worker can clone (set testdef_repository)"
                )
            if source.is_reserved_host(host):
                return f"the test definition's repository {repository} names no real host"
        for name, image in ((action.get("deploy") or {}).get("images") or {}).items():
            url = str(image.get("url", "")) if isinstance(image, dict) else ""
            if source.is_reserved_host(source.split_remote(url)[1]):
                return f"image {name}: {url} names no real host (set images_url)"
        docker = str(((action.get("boot") or {}).get("docker") or {}).get("name", ""))
        registry = docker.split("/")[0] if "/" in docker else ""
        if "." in registry and source.is_reserved_host(registry.split(":")[0]):
            return f"the docker image {docker} names no real registry (set fvp_docker)"
    return ""


def render_device(dictionary: Path, context: dict[str, Any] | None = None) -> str:
    """The device configuration lava-server makes of the device dictionary ``dictionary`` for
    a job whose ``context`` (the job's context variables: arch, memory, ...) is given."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as context_file:
        json.dump(context or {}, context_file)
        context_file.flush()
        result = _schema_check(
            "render", str(lava_server_templates()), str(dictionary), context_file.name
        )
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        raise UserError(f"cannot render {dictionary}: {detail[-1] if detail else 'no output'}")
    return result.stdout


def _schema_check(*args: str) -> subprocess.CompletedProcess[str]:
    if not Path(DEBIAN_PYTHON).exists():
        raise SchemaUnavailable(f"{DEBIAN_PYTHON} is missing: LAVA's schema needs Debian's python3")
    return subprocess.run(
        [DEBIAN_PYTHON, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def lava_server_templates() -> Path:
    """lava-server's ``device-types`` directory, from Debian's package, unpacked once."""
    root = cache_root() / "lava-server"
    templates = root / "usr/share/lava-server/device-types"
    if (templates / "base.jinja2").is_file():
        return templates
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("*.deb"):
        old.unlink()
    download = subprocess.run(
        ["apt-get", "download", "lava-server"], cwd=root, capture_output=True, text=True
    )
    packages = sorted(root.glob("lava-server_*.deb"))
    if download.returncode != 0 or not packages:
        raise SchemaUnavailable(
            "cannot download Debian's lava-server package for its device templates: "
            + " ".join((download.stderr or download.stdout).split())[-300:]
        )
    unpack = subprocess.run(
        ["dpkg-deb", "-x", str(packages[-1]), str(root)], capture_output=True, text=True
    )
    if unpack.returncode != 0 or not (templates / "base.jinja2").is_file():
        raise SchemaUnavailable(f"cannot unpack {packages[-1]}: {unpack.stderr.strip()}")
    return templates
