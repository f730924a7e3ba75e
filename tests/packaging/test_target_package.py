"""The target package is the machine's software alone: with nothing but the standard library and
protobuf on the path, every module imports, nothing of the host toolkit or of ``cryptography``
is loaded, and the service and parsec-tool's commands work against the RSE model."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import google.protobuf
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from parsec_demo_processes import socket_accepts

import parsec_service
from parsec_demo.services import Service, parsec_config_text, start_rse_model

TARGET_DIR = Path(parsec_service.__file__).resolve().parents[1]

_IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
import parsec_service
names = [m.name for m in pkgutil.walk_packages(parsec_service.__path__, "parsec_service.")
         if m.name != "parsec_service.__main__"]
for name in names:
    importlib.import_module(name)
for other in ("cryptography", "parsec_demo", "grpc_tools", "paramiko", "yaml", "pexpect"):
    if other in sys.modules:
        raise SystemExit(f"{other} was imported")
    try:
        importlib.import_module(other)
    except ImportError:
        continue
    raise SystemExit(f"{other} can be imported here: the check proves nothing")
print(len(names))
"""


@pytest.fixture
def bare_python(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """An interpreter that sees the standard library, protobuf and the target package only."""
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "google").symlink_to(Path(google.protobuf.__file__).resolve().parents[1])
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{deps}{os.pathsep}{TARGET_DIR}"}
    yield [sys.executable, "-S"], env


def test_every_module_imports_with_protobuf_alone(
    bare_python: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    python, env = bare_python
    result = subprocess.run(
        [*python, "-c", _IMPORT_EVERYTHING], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert int(result.stdout) >= 20


def test_the_service_and_its_tool_work_with_protobuf_alone(
    bare_python: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    python, env = bare_python
    rse = start_rse_model(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(parsec_config_text())
    socket_path = tmp_path / "parsec.sock"
    log = open(tmp_path / "parsec.log", "wb")  # noqa: SIM115 - closed below
    service = subprocess.Popen(
        [*python, "-m", "parsec_service", "serve", "--rse", str(rse.socket_path),
         "--store", str(tmp_path / "store"), "--config", str(config), "--socket", str(socket_path)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    parsec = Service("parsec", service, tmp_path / "parsec.log", socket_path)
    try:
        for _ in range(500):
            if socket_accepts(socket_path) or service.poll() is not None:
                break
            time.sleep(0.02)
        tool_env = {**env, "PARSEC_SERVICE_ENDPOINT": f"unix:{socket_path}"}

        def tool(*args: str) -> str:
            result = subprocess.run(
                [*python, "-m", "parsec_service", *args],
                env=tool_env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            return result.stdout

        assert tool("ping").strip() == "1.0"
        tool("create-ecc-key", "-k", "bare")
        pem = tool("export-public-key", "-k", "bare")
        public = serialization.load_pem_public_key(pem.encode())
        assert isinstance(public, ec.EllipticCurvePublicKey)
        signature = base64.b64decode(tool("sign", "-k", "bare", "hello"))
        public.verify(signature, b"hello", ec.ECDSA(hashes.SHA256()))  # DER, as parsec-tool
        tool("create-rsa-key", "-s", "-k", "bare-rsa")
        rsa_pem = tool("export-public-key", "-k", "bare-rsa")
        assert serialization.load_pem_public_key(rsa_pem.encode()).key_size == 2048
        tool("delete-key", "-k", "bare")
        assert "bare" not in tool("list-keys").split()
    finally:
        parsec.stop()
        log.close()
        rse.stop()
    assert "Traceback" not in (tmp_path / "parsec.log").read_text()
