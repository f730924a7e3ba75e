"""The layer's FVP controller (meta-parsec-demo/lib/oeqa/controllers/parsec_demo_fvp.py).

testimage imports every controller module it finds, so without meta-arm the module must import
cleanly and define no class. With it, the class is meta-arm's OEFVPTarget plus a reader of the
RSE console: here meta-arm's OEFVPTarget is stood in for by a class with its scarthgap
interface (states, ``transition``, ``_setup_consoles`` opening one pexpect session per
.fvpconf console logged beside the boot log, ``terminals``, and ``__getattr__`` answering any
other attribute with a pexpect call), its console sessions talking to a local TCP server that
plays the FVP's telnet port.
"""

from __future__ import annotations

import enum
import importlib.util
import json
import logging
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect.fdpexpect
import pytest

from parsec_demo.paths import PROJECT_ROOT

CONTROLLER = PROJECT_ROOT / "meta-parsec-demo/lib/oeqa/controllers/parsec_demo_fvp.py"
RSE_LINES = [
    "[Crypto] psa_import_key: type=RSA_PUBLIC_KEY bits=2048 lifetime=persistent -> key 0x00000001",
    "[Crypto] psa_verify_hash: key 0x00000001 alg=RSA_PKCS1V15_SIGN(SHA_256) -> PSA_SUCCESS",
    "[Crypto] psa_destroy_key: key 0x00000001 -> PSA_SUCCESS",
]


def load_controller(fvp_module: types.ModuleType | None) -> types.ModuleType:
    """The controller module, imported as testimage imports it, with ``oeqa.controllers.fvp``
    being ``fvp_module`` (None: not importable, as in a build without meta-arm)."""
    saved = {n: sys.modules.get(n) for n in ("oeqa.controllers.fvp", "oeqa.controllers")}
    try:
        if fvp_module is None:
            sys.modules["oeqa.controllers.fvp"] = None  # type: ignore[assignment]
        else:
            package = types.ModuleType("oeqa.controllers")
            package.__path__ = []
            sys.modules["oeqa.controllers"] = package
            sys.modules["oeqa.controllers.fvp"] = fvp_module
        spec = importlib.util.spec_from_file_location("parsec_demo_fvp_under_test", CONTROLLER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value


# --- a stand-in for meta-arm's OEFVPTarget and for the FVP's telnet consoles ------------------


class FakeTelnetConsole:
    """A TCP server standing in for one FVP console port: sends what it is given."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connection: socket.socket | None = None
        self.accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            self.connection, _ = self.listener.accept()
        except OSError:  # closed before anyone connected
            return
        self.accepted.set()

    def send(self, text: str) -> None:
        assert self.accepted.wait(5)
        assert self.connection is not None
        self.connection.sendall(text.encode())

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.listener.close()


class State(enum.StrEnum):
    OFF = "off"
    ON = "on"
    LINUX = "linux"


def fake_fvp_module(consoles: dict[str, FakeTelnetConsole], events: list[str]) -> types.ModuleType:
    class FakeOEFVPTarget:
        def __init__(
            self,
            logger: logging.Logger,
            target_ip: str,
            server_ip: str,
            timeout: int = 300,
            user: str = "root",
            port: int | None = None,
            dir_image: str | None = None,
            rootfs: str | None = None,
            bootlog: str | None = None,
            **kwargs: Any,
        ) -> None:
            self.logger = logger
            assert dir_image is not None and rootfs is not None
            base = Path(rootfs).name.replace("".join(Path(rootfs).suffixes), "")
            self.fvpconf = Path(dir_image) / (base + ".fvpconf")
            self.bootlog = bootlog
            self.terminals: dict[str, Any] = {}
            self.state = State.OFF
            self.files: list[Any] = []

        def transition(self, state: State, timeout: int = 600) -> None:
            if state == self.state:
                return
            if state == State.OFF:
                # meta-arm's FVPRunner.stop reads each console to its end, then closes it.
                alive = [t.name for t in threading.enumerate() if t.name.startswith("drain-")]
                events.append(f"runner stops; drains alive: {alive}")
                for session in self.terminals.values():
                    session.close()
                for file in self.files:
                    file.close()
                self.terminals = {}
            elif state == State.ON:
                self.transition(State.OFF, timeout)
                events.append("FVP started")
                self._setup_consoles()
            elif state == State.LINUX:
                self.transition(State.ON, timeout)
            self.state = state

        def _setup_consoles(self) -> None:
            for alias in json.loads(self.fvpconf.read_text())["consoles"]:
                assert self.bootlog is not None
                suffix = Path(self.bootlog).suffix
                log = open(Path(self.bootlog).parent / f"{alias}_log{suffix}", "ab")  # noqa: SIM115
                sock = socket.create_connection(("127.0.0.1", consoles[alias].port))
                self.files.append(log)
                # The session owns the connection (as telnet's pty): closing it closes both.
                self.terminals[alias] = pexpect.fdpexpect.fdspawn(sock.detach(), logfile=log)

        def stop(self, **kwargs: Any) -> None:
            self.transition(State.OFF)

        def run(self, cmd: str, timeout: int | None = None) -> tuple[int, str]:
            self.transition(State.LINUX)
            return 0, ""

        def __getattr__(self, name: str) -> Callable[..., Any]:
            def call_pexpect(terminal: str, *args: Any, **kwargs: Any) -> Any:
                return getattr(self.terminals[terminal], name)(*args, **kwargs)

            return call_pexpect

    module = types.ModuleType("oeqa.controllers.fvp")
    module.OEFVPTarget = FakeOEFVPTarget  # type: ignore[attr-defined]
    module.OEFVPTargetState = State  # type: ignore[attr-defined]
    return module


@pytest.fixture
def consoles() -> Iterator[dict[str, FakeTelnetConsole]]:
    found = {"default": FakeTelnetConsole(), "rse": FakeTelnetConsole()}
    yield found
    for console in found.values():
        console.close()


def make_target(module: types.ModuleType, tmp_path: Path, aliases: list[str]) -> Any:
    images = tmp_path / "deploy"
    images.mkdir()
    conf = {"exe": "FVP_RD_1_AE", "consoles": {a: f"terminal_{a}" for a in aliases}}
    (images / "baremetal-image-fvp-rd-kronos.fvpconf").write_text(json.dumps(conf))
    logs = tmp_path / "testimage"
    logs.mkdir()
    return module.ParsecDemoFVPTarget(
        logging.getLogger("test"), "127.0.0.1", "127.0.0.1", port="2222",
        dir_image=str(images), rootfs=str(images / "baremetal-image-fvp-rd-kronos.wic"),
        bootlog=str(logs / "qemu_boot_log.20261202120000"),
    )  # fmt: skip


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- the tests ---------------------------------------------------------------------------------


def test_without_meta_arm_the_module_imports_and_defines_no_controller() -> None:
    module = load_controller(None)
    assert module.OEFVPTarget is None
    assert not hasattr(module, "ParsecDemoFVPTarget")


def test_the_controller_is_meta_arm_s_target() -> None:
    fvp = fake_fvp_module({}, [])
    module = load_controller(fvp)
    assert issubclass(module.ParsecDemoFVPTarget, fvp.OEFVPTarget)


@pytest.mark.slow
def test_the_rse_console_fills_its_log_while_nobody_reads_it(
    tmp_path: Path, consoles: dict[str, FakeTelnetConsole]
) -> None:
    events: list[str] = []
    target = make_target(
        load_controller(fake_fvp_module(consoles, events)), tmp_path, ["default", "rse"]
    )
    before = target.rse_log
    assert before is None, "no log before the FVP runs (a string or None, nothing else)"
    target.run("true")  # the first command starts the FVP, as OEFVPTarget does
    rse_log = target.rse_log
    assert rse_log == str(tmp_path / "testimage/rse_log.20261202120000")
    # The RSE writes while the cases run; nothing calls expect() on its console.
    for line in RSE_LINES:
        consoles["rse"].send(line + "\r\n")
        time.sleep(0.2)
    assert wait_for(lambda: Path(rse_log).read_text().count("[Crypto]") == 3)
    assert Path(rse_log).read_text().splitlines() == RSE_LINES
    # Other consoles stay OEFVPTarget's: not read by the controller.
    consoles["default"].send("login: ")
    time.sleep(0.6)
    assert (tmp_path / "testimage/default_log.20261202120000").read_bytes() == b""
    target.stop()
    assert events == ["FVP started", "runner stops; drains alive: []"]
    assert target.rse_log is None
    assert not [t for t in threading.enumerate() if t.name.startswith("drain-")]


@pytest.mark.slow
def test_a_restart_reads_the_new_console(
    tmp_path: Path, consoles: dict[str, FakeTelnetConsole]
) -> None:
    events: list[str] = []
    target = make_target(
        load_controller(fake_fvp_module(consoles, events)), tmp_path, ["default", "rse"]
    )
    target.transition(State.ON)
    first = target.rse_drain
    consoles["rse"].send(RSE_LINES[0] + "\r\n")
    assert wait_for(lambda: "[Crypto]" in Path(target.rse_log).read_text())
    old_rse = consoles["rse"]
    consoles["rse"] = FakeTelnetConsole()
    try:
        target.transition(State.OFF)
        target.transition(State.ON)
        assert target.rse_drain is not first and not first.is_alive()
        consoles["rse"].send(RSE_LINES[1] + "\r\n")
        assert wait_for(lambda: "psa_verify_hash" in Path(target.rse_log).read_text())
        target.stop()
    finally:
        old_rse.close()
    assert events == [
        "FVP started", "runner stops; drains alive: []", "FVP started",
        "runner stops; drains alive: []",
    ]  # fmt: skip


def test_a_machine_without_an_rse_console_has_no_rse_log(
    tmp_path: Path, consoles: dict[str, FakeTelnetConsole], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="test"):
        target = make_target(load_controller(fake_fvp_module(consoles, [])), tmp_path, ["default"])
    assert any("names no 'rse' console" in r.getMessage() for r in caplog.records)
    target.run("true")
    assert target.rse_log is None and target.rse_drain is None
    target.stop()


def test_the_drain_ends_when_the_console_closes(
    tmp_path: Path, consoles: dict[str, FakeTelnetConsole]
) -> None:
    target = make_target(
        load_controller(fake_fvp_module(consoles, [])), tmp_path, ["default", "rse"]
    )
    target.run("true")
    consoles["rse"].send(RSE_LINES[2] + "\r\n")
    assert wait_for(lambda: "psa_destroy_key" in Path(target.rse_log).read_text())
    assert consoles["rse"].connection is not None
    consoles["rse"].connection.close()  # the FVP closed its end
    assert wait_for(lambda: not target.rse_drain.is_alive())
    assert target.rse_drain.error is None
    target.stop()
