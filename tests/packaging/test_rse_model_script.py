"""``parsec-demo-rse-model`` is the RSE model alone: the options of ``parsec-demo rse serve``,
and, with nothing but the standard library and ``cryptography`` on the path (what the layer's
parsec-demo-rse-model-native gives it in a Yocto build's native sysroot), it loads nothing else
of the toolkit and serves."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _cffi_backend
import cryptography
import pytest

import parsec_demo
import parsec_service
from parsec_demo.cli import build_parser
from parsec_demo.rse import model_command
from parsec_service.rse_link.client import RseClient

HOST_DIR = Path(parsec_demo.__file__).resolve().parents[1]
TARGET_DIR = Path(parsec_service.__file__).resolve().parents[1]

#: What the model may load besides the standard library: cryptography (its Rust bindings
#: register ``_openssl``) with cffi's backend, the model and the target package's RSE link.
_LOADED = """
import importlib, sys
from parsec_demo.rse import model_command, server
loaded = sorted(m for m in sys.modules if m.split(".")[0] not in sys.stdlib_module_names)
print("\\n".join(loaded))
for other in ("google.protobuf", "paramiko", "pexpect", "yaml", "grpc_tools"):
    try:
        importlib.import_module(other)
    except ImportError:
        continue
    raise SystemExit(f"{other} can be imported here: the check proves nothing")
"""
ALLOWED_TOP_LEVEL = {"cryptography", "_cffi_backend", "_openssl", "parsec_demo", "parsec_service"}
ALLOWED_TOOLKIT = ("parsec_demo.errors", "parsec_demo.rse")
MODEL_MAIN = "import sys; from parsec_demo.rse.model_command import main; sys.exit(main())"


@pytest.fixture
def bare_python(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """An interpreter that sees the standard library, cryptography and this checkout's
    packages only (no site-packages)."""
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "cryptography").symlink_to(Path(cryptography.__file__).resolve().parent)
    backend = Path(_cffi_backend.__file__).resolve()
    (deps / backend.name).symlink_to(backend)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(map(str, (deps, HOST_DIR, TARGET_DIR))),
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


def test_the_model_loads_nothing_else_of_the_toolkit(
    bare_python: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    python, env = bare_python
    result = subprocess.run(
        [*python, "-c", _LOADED], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr + result.stdout
    loaded = result.stdout.split()
    assert "parsec_demo.rse.server" in loaded and "cryptography" in loaded
    assert {m.split(".")[0] for m in loaded} - {"__main__"} <= ALLOWED_TOP_LEVEL
    toolkit = [m for m in loaded if m.startswith("parsec_demo.")]
    assert all(m.startswith(ALLOWED_TOOLKIT) for m in toolkit), toolkit
    assert not [m for m in loaded if m.startswith("parsec_service.contracts")], "protobuf's"


def test_the_model_serves_with_cryptography_alone(
    bare_python: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    python, env = bare_python
    socket_path = tmp_path / "rse.sock"
    log = tmp_path / "rse-console.log"
    process = subprocess.Popen(
        [*python, "-c", MODEL_MAIN, "--socket", str(socket_path),
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
            [*python, "-c", MODEL_MAIN, *args],
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
