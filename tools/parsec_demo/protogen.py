"""Generating Python code from the Parsec ``.proto`` contracts, as part of the build.

The contracts live once, in the layer (``PROTOBUF_DIR``), where the C driver's recipe finds them
too. Their Python modules (``ping_pb2`` ...) are generated into ``build/python-protobuf`` by the
``protoc`` that ``grpcio-tools`` ships (matched to the pinned protobuf runtime), and regenerated
whenever a contract changes. ``tools/lib/bootstrap.sh`` runs this; importing
``parsec_demo.parsec.contracts`` runs it too if the output is stale, so no entry point can run on
outdated code.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .paths import PROJECT_ROOT

PROTOBUF_DIR = (
    PROJECT_ROOT / "meta-parsec-demo/recipes-parsec/parsec-tls-demo/files/parsec-se-driver/protobuf"
)
OUTPUT_DIR = PROJECT_ROOT / "build/python-protobuf"
STAMP = OUTPUT_DIR / ".contracts-sha256"


def contracts() -> list[Path]:
    return sorted(PROTOBUF_DIR.glob("*.proto"))


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in contracts():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def up_to_date() -> bool:
    try:
        return STAMP.read_text().strip() == fingerprint()
    except OSError:
        return False


def generate(force: bool = False) -> Path:
    """Make ``OUTPUT_DIR`` hold the modules of the current contracts; returns it."""
    if not force and up_to_date():
        return OUTPUT_DIR
    OUTPUT_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT_DIR.parent / ".protogen.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one generator at a time across processes
        if force or not up_to_date():
            _generate()
    return OUTPUT_DIR


def _generate() -> None:
    from grpc_tools import protoc  # the build tool is only needed when generating

    # Generate into a fresh directory and swap it in, so that concurrent processes never
    # import a half-written module.
    staging = Path(tempfile.mkdtemp(prefix=".python-protobuf-", dir=OUTPUT_DIR.parent))
    args = [
        "protoc",
        f"-I{PROTOBUF_DIR}",
        f"--python_out={staging}",
        *[str(p) for p in contracts()],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on the contracts in {PROTOBUF_DIR}")
    (staging / STAMP.name).write_text(fingerprint() + "\n")
    old = OUTPUT_DIR.with_name(f".old-{os.getpid()}-{OUTPUT_DIR.name}")
    if OUTPUT_DIR.exists():
        OUTPUT_DIR.rename(old)
    staging.rename(OUTPUT_DIR)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def ensure_importable() -> None:
    """Generate if needed and put the generated modules on ``sys.path``.

    An installed service (the dev image, a Yocto image) has its modules generated at build time
    by the target's own protoc; ``PARSEC_DEMO_PROTOBUF_DIR`` names them and nothing is generated.
    """
    installed = os.environ.get("PARSEC_DEMO_PROTOBUF_DIR")
    directory = Path(installed) if installed else generate()
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))


if __name__ == "__main__":
    print(generate(force="--force" in sys.argv))
