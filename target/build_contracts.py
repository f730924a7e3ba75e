"""Generating the Python modules of the Parsec contracts: a build step, not part of the package.

The ``.proto`` files live once, in ``contracts/parsec/`` at the top of the repository (or where
``PARSEC_CONTRACTS_DIR`` points). Their modules are generated into the package's
``parsec_service/contracts/`` as ``<name>_pb2.py``, importing each other relatively, so that they
work wherever the package is installed.

The ``protoc`` is the one ``grpcio-tools`` ships (matched to the pinned protobuf runtime) when
that is importable, else the program ``PROTOC`` names: a build that brings its own protobuf,
as the Yocto recipes do (protobuf-native's ``protoc``, matched to their python3-protobuf), sets
it.

Two users: the package builds (``setup.py`` here and at the top of the repository, through
:func:`build_command`) generate into their build directory, never into the source tree, so
that what they package was made by their own ``protoc``; the development set-up
(``tools/lib/bootstrap.sh``, an editable install, the tests) generates into the source tree,
again only when a contract changed. ``python build_contracts.py [--force]`` does that by hand.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
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
#: inside a package that must be a relative import. (The dev image applies the same one-line
#: rewrite with sed.)
_SIBLING_IMPORT = re.compile(r"^import (\w+_pb2) as ", re.MULTILINE)

#: The environment variable that names the ``protoc`` to use when grpcio-tools is not there.
PROTOC_VARIABLE = "PROTOC"


def _run_protoc(args: list[str]) -> None:
    """protoc with ``args``: grpcio-tools's own, else the program ``$PROTOC`` names."""
    try:
        from grpc_tools import protoc  # a build tool: needed only when generating
    except ImportError:
        program = os.environ.get(PROTOC_VARIABLE)
        if not program:
            raise RuntimeError(
                "no protoc to generate the Parsec contracts' modules: install grpcio-tools "
                f"(the project's dev extra) or set {PROTOC_VARIABLE} to a protoc that matches "
                "the protobuf runtime"
            ) from None
        found = shutil.which(program)
        if found is None:
            raise RuntimeError(f"{PROTOC_VARIABLE}={program} is not a program") from None
        status = subprocess.run([found, *args], check=False).returncode
    else:
        status = protoc.main(["protoc", *args])
    if status != 0:
        raise RuntimeError(f"protoc failed on the contracts in {contracts_dir()}")


def write_modules(output: Path) -> None:
    """Generate the contracts' modules into ``output``, replacing any ``*_pb2.py`` there."""
    with tempfile.TemporaryDirectory(prefix="parsec-contracts-") as tmp:
        _run_protoc([f"-I{contracts_dir()}", f"--python_out={tmp}", *map(str, contracts())])
        generated = sorted(Path(tmp).glob("*_pb2.py"))
        for stale in set(output.glob("*_pb2.py")) - {output / m.name for m in generated}:
            stale.unlink()
        # Replace each module whole (rename), so that a process importing meanwhile never
        # sees a half-written one.
        for module in generated:
            code = _SIBLING_IMPORT.sub(r"from . import \1 as ", module.read_text())
            staged = output / f".{module.name}.tmp"
            staged.write_text(code)
            os.replace(staged, output / module.name)


def _generate(output: Path) -> None:
    write_modules(output)
    (output / STAMP.name).write_text(fingerprint() + "\n")


def build_command() -> type:
    """setuptools's ``build_py`` that also generates the contracts' modules: into the build
    directory for a wheel, into the source tree for an editable install (which imports the
    package from there)."""
    from setuptools.command.build_py import build_py

    class BuildWithContracts(build_py):
        def run(self) -> None:
            if self.editable_mode:
                generate()
                super().run()
                return
            super().run()
            if not self.dry_run:
                output = Path(self.build_lib) / "parsec_service" / "contracts"
                output.mkdir(parents=True, exist_ok=True)
                write_modules(output)

    return BuildWithContracts


if __name__ == "__main__":
    print(generate(force="--force" in sys.argv))
