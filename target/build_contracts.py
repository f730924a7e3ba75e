"""Generating the Python modules of the Parsec contracts: a build step, not part of the package.

The ``.proto`` files live once, in ``contracts/parsec/`` at the top of the repository (or where
``PARSEC_CONTRACTS_DIR`` points). Their modules are generated into the package's
``parsec_service/contracts/`` as ``<name>_pb2.py``, importing each other relatively, so that they
work wherever the package is installed. The ``protoc`` is the one ``grpcio-tools`` ships
(matched to the pinned protobuf runtime).

Used by the package builds (``setup.py`` here and at the top of the repository) and by the
development set-up (``tools/lib/bootstrap.sh``, the tests), which regenerate only when a
contract changed. ``python build_contracts.py [--force]`` runs it by hand.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE / "parsec_service" / "contracts"
STAMP = PACKAGE_DIR / ".contracts-sha256"


def contracts_dir() -> Path:
    override = os.environ.get("PARSEC_CONTRACTS_DIR")
    return Path(override) if override else HERE.parent / "contracts" / "parsec"


def contracts() -> list[Path]:
    found = sorted(contracts_dir().glob("*.proto"))
    if not found:
        raise FileNotFoundError(f"no .proto contracts in {contracts_dir()}")
    return found


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in contracts():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def up_to_date(output: Path = PACKAGE_DIR) -> bool:
    try:
        stamp = (output / STAMP.name).read_text().strip()
    except OSError:
        return False
    return stamp == fingerprint() and all(
        (output / f"{p.stem}_pb2.py").exists() for p in contracts()
    )


def generate(output: Path = PACKAGE_DIR, force: bool = False) -> Path:
    """Make ``output`` hold the modules of the current contracts; returns it."""
    output.mkdir(parents=True, exist_ok=True)
    with open(output / ".generate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one generator at a time across processes
        if force or not up_to_date(output):
            _generate(output)
    return output


#: protoc writes ``import psa_key_attributes_pb2 as ...`` for a contract that imports another;
#: inside a package that must be a relative import. (The recipe and the dev image apply the same
#: one-line rewrite with sed.)
_SIBLING_IMPORT = re.compile(r"^import (\w+_pb2) as ", re.MULTILINE)


def _generate(output: Path) -> None:
    from grpc_tools import protoc  # a build tool: needed only when generating

    with tempfile.TemporaryDirectory(prefix="parsec-contracts-") as tmp:
        args = ["protoc", f"-I{contracts_dir()}", f"--python_out={tmp}"]
        args += [str(p) for p in contracts()]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on the contracts in {contracts_dir()}")
        # Replace each module whole (rename), so that a process importing meanwhile never
        # sees a half-written one.
        for module in sorted(Path(tmp).glob("*_pb2.py")):
            code = _SIBLING_IMPORT.sub(r"from . import \1 as ", module.read_text())
            staged = output / f".{module.name}.tmp"
            staged.write_text(code)
            os.replace(staged, output / module.name)
    (output / STAMP.name).write_text(fingerprint() + "\n")


if __name__ == "__main__":
    print(generate(force="--force" in sys.argv))
