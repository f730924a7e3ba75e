"""``parsec-demo-rse-model`` is the RSE model alone: the options of ``parsec-demo rse serve``,
and, with nothing but the standard library, ``cryptography``, its own package and the target
package on the path (what the layer's parsec-demo-rse-model-native and parsec-demo-service-native
give it in a Yocto build's native sysroot: no toolkit, no protobuf), it serves."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _cffi_backend
import cryptography
import pytest

from parsec_demo.cli import build_parser
from parsec_demo.paths import PROJECT_ROOT
from parsec_rse_model import command as model_command
from parsec_service.rse_link.client import RseClient

#: What the model may load besides the standard library: cryptography (its Rust bindings
#: register ``_openssl``) with cffi's backend, the model and the target package's RSE link.
_LOADED = """
import importlib, sys
from parsec_rse_model import command, server
loaded = sorted(m for m in sys.modules if m.split(".")[0] not in sys.stdlib_module_names)
print("\\n".join(loaded))
for other in ("parsec_demo", "google.protobuf", "paramiko", "pexpect", "yaml", "grpc_tools"):
    try:
        importlib.import_module(other)
    except ImportError:
        continue
    raise SystemExit(f"{other} can be imported here: the check proves nothing")
"""
ALLOWED_TOP_LEVEL = {
    "cryptography",
    "_cffi_backend",
    "_openssl",
    "parsec_rse_model",
    "parsec_service",
}


@pytest.fixture(scope="module")
def native_sysroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What parsec-demo-rse-model-native and parsec-demo-service-native install: the wheels of
    rse-model/ and target/, each built from a copy of its own folder (with the contracts the
    target's build reads), unpacked into one directory."""
    top = tmp_path_factory.mktemp("native")
    for folder in ("rse-model", "target", "contracts"):
        shutil.copytree(
            PROJECT_ROOT / folder,
            top / folder,
            ignore=shutil.ignore_patterns("__pycache__", "*_pb2.py", ".contracts-sha256"),
        )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(top / "wheels"),
         str(top / "rse-model"), str(top / "target")],
        cwd=top, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    sysroot = top / "sysroot"
    for wheel in sorted((top / "wheels").glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(sysroot)
    return sysroot


def test_the_model_s_distribution_holds_the_model_alone(native_sysroot: Path) -> None:
    [wheel] = native_sysroot.parent.joinpath("wheels").glob("parsec_demo_rse_model-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert {n.split("/")[0] for n in names if not n.startswith(wheel.name.split("-")[0])} == {
        "parsec_rse_model"
    }
    assert "parsec-demo-rse-model = parsec_rse_model.command:main" in scripts
    assert scripts.count("=") == 1, scripts


@pytest.fixture
def bare_python(native_sysroot: Path, tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """An interpreter that sees the standard library, cryptography and the native sysroot's
    two distributions only (no site-packages, no toolkit, no protobuf)."""
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "cryptography").symlink_to(Path(cryptography.__file__).resolve().parent)
    backend = Path(_cffi_backend.__file__).resolve()
    (deps / backend.name).symlink_to(backend)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(map(str, (deps, native_sysroot))),
    }
    yield [sys.executable, "-S"], env


def _options(parser: argparse.ArgumentParser) -> list[tuple[Any, ...]]:
    return [
        (tuple(a.option_strings), a.dest, a.default, a.required, a.type, a.help)
        for a in parser._actions
        if a.dest not in ("help", "verbose", "command_prog")
    ]


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    chosen: argparse.ArgumentParser = commands.choices[name]
    return chosen


def test_the_model_takes_exactly_the_options_of_rse_serve() -> None:
    serve = _subparser(_subparser(build_parser(), "rse"), "serve")
    ours = _options(model_command.build_parser())
    assert ours == _options(serve)
    assert {o for a in ours for o in a[0]} == {
        "--socket", "--store", "--log", "--events", "--slots", "--max-payload", "--max-keys",
        "--max-connections",
    }  # fmt: skip


def test_the_model_loads_its_package_the_rse_link_and_cryptography_only(
    bare_python: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    python, env = bare_python
    result = subprocess.run(
        [*python, "-c", _LOADED], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout
    loaded = result.stdout.split()
    assert "parsec_rse_model.server" in loaded and "cryptography" in loaded
    assert {m.split(".")[0] for m in loaded} - {"__main__"} <= ALLOWED_TOP_LEVEL
    assert not [m for m in loaded if m.startswith("parsec_service.contracts")], "protobuf's"


def test_the_model_serves_with_cryptography_alone(
    bare_python: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    python, env = bare_python
    socket_path = tmp_path / "rse.sock"
    log = tmp_path / "rse-console.log"
    process = subprocess.Popen(
        [*python, "-m", "parsec_rse_model", "--socket", str(socket_path),
         "--store", str(tmp_path / "store"), "--log", str(log), "--slots", "4"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert socket_path.exists(), process.communicate(timeout=5)
        with RseClient(socket_path) as client:
            assert len(client.generate_random(16)) == 16
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0 and "Traceback" not in stderr, stderr
    assert log.read_text().strip() and log.with_suffix(".jsonl").exists()
    assert not socket_path.exists()


def test_mistakes_are_one_line(
    bare_python: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    python, env = bare_python

    def model(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*python, "-m", "parsec_rse_model", *args],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    usage = model("--socket", str(tmp_path / "s"), "--store", str(tmp_path / "k"), "--slots", "0")
    assert usage.returncode == 2
    assert usage.stderr.splitlines() == [
        "parsec-demo-rse-model: argument --slots: must be at least 1"
    ]
    (tmp_path / "not-a-dir").write_text("")
    store = model("--socket", str(tmp_path / "s"), "--store", str(tmp_path / "not-a-dir"))
    assert store.returncode == 1
    [line] = store.stderr.splitlines()
    assert line.startswith("parsec-demo-rse-model: ")
