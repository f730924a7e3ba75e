"""Arm FVPs, from the ``.fvpconf`` meta-arm's fvpboot class writes next to an image.

The keys are fvpboot's: ``fvp-bindir``, ``exe``, ``parameters`` (``--parameter k=v``), ``data``
(``--data``), ``applications`` (``--application k=v``), ``terminals`` (FVP terminal -> title),
``consoles`` (alias -> terminal), ``args`` (appended), ``env`` (the FVP's environment, isolated
from the caller's). The FVP runs from the ``.fvpconf``'s directory. Its terminals do not open
windows (``<terminal>.start_telnet=0``); each announces ``<terminal>: Listening for serial
connection on port N`` and the runner connects to it and logs it to ``<alias>.log``. The SSH
forward in ``...virtio_net.hostbridge.userNetPorts`` (``2222=22`` in the RD-1 AE machine) uses a
port allocated for this run, so FVPs run side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from parsec_demo_processes import stop_group, wait_until

from .lifecycle import Machine
from .ports import PortLease, allocate_port

if TYPE_CHECKING:
    from .ssh_target import SSHTarget

USER_NET_PORTS = "virtio_net.hostbridge.userNetPorts"
PORT_ANNOUNCEMENT = re.compile(rb"^(\S+): Listening for serial connection on port (\d+)")
TELNET_IAC = 255


@dataclass(frozen=True)
class FvpConfig:
    exe: str
    directory: Path
    bindir: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)
    applications: dict[str, str] = field(default_factory=dict)
    terminals: dict[str, str] = field(default_factory=dict)
    consoles: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> FvpConfig:
        data = json.loads(path.read_text())
        if not data.get("exe"):
            raise ValueError(f"{path}: no 'exe': not an .fvpconf")
        return cls(
            exe=data["exe"],
            directory=path.resolve().parent,
            bindir=data.get("fvp-bindir") or "",
            parameters={k: str(v) for k, v in data.get("parameters", {}).items()},
            data=list(data.get("data", [])),
            applications={k: str(v) for k, v in data.get("applications", {}).items()},
            terminals=dict(data.get("terminals", {})),
            consoles=dict(data.get("consoles", {})),
            args=list(data.get("args", [])),
            env={k: str(v) for k, v in data.get("env", {}).items()},
        )

    @property
    def default_console(self) -> str | None:
        return self.consoles.get("default")


def forward_ssh(value: str, host_port: int) -> str:
    """``userNetPorts`` with the host side of the forward to guest port 22 replaced."""
    forwards = []
    for forward in value.split(","):
        _, _, guest = forward.partition("=")
        forwards.append(f"{host_port}={guest}" if guest.strip() == "22" else forward)
    return ",".join(forwards)


def fvp_command(config: FvpConfig, ssh_port: int | None) -> list[str]:
    executable = str(Path(config.bindir) / config.exe) if config.bindir else config.exe
    command = [executable]
    for key, value in config.parameters.items():
        if key.endswith(USER_NET_PORTS) and ssh_port is not None:
            value = forward_ssh(value, ssh_port)
        command += ["--parameter", f"{key}={value}"]
    for item in config.data:
        command += ["--data", item]
    for key, value in config.applications.items():
        command += ["--application", f"{key}={value}"]
    for terminal in config.terminals:
        command += ["--parameter", f"{terminal}.start_telnet=0"]
    return command + config.args


def fvp_environment(config: FvpConfig) -> dict[str, str]:
    """An isolated environment: the .fvpconf's variables, and just enough to run a program."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "USER", "LANG") if k in os.environ}
    env.update(config.env)
    return env


def strip_telnet(data: bytes) -> bytes:
    """Drop telnet negotiation (IAC sequences) from a console stream."""
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == TELNET_IAC and i + 1 < len(data):
            command = data[i + 1]
            i += 3 if command in (251, 252, 253, 254) else 2
            continue
        out.append(byte)
        i += 1
    return bytes(out)


class ConsoleLogger(threading.Thread):
    """Connects to one FVP terminal and appends what it says to a log file."""

    def __init__(self, name: str, port: int, log_path: Path) -> None:
        super().__init__(daemon=True, name=f"console-{name}")
        self.console_name = name
        self.port = port
        self.log_path = log_path
        self.sock: socket.socket | None = None

    def run(self) -> None:
        def connected() -> bool:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                return False
            return True

        if not wait_until(connected, timeout=5, interval=0.1) or self.sock is None:
            return
        self.sock.settimeout(None)
        with open(self.log_path, "ab") as log:
            while True:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                log.write(strip_telnet(data))
                log.flush()

    def send(self, text: str) -> None:
        if self.sock is not None:
            self.sock.sendall(text.encode())

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()


class FvpMachine(Machine):
    """One running FVP: its consoles logged, its SSH forward on an allocated port."""

    emulator = "the FVP"
    kind = "fvp"
    program_hint = "(the .fvpconf's fvp-bindir and exe, or PATH)"

    def __init__(
        self,
        config: FvpConfig,
        run_dir: Path,
        boot_timeout: float = 3600.0,
        extra_args: list[str] | None = None,
        ssh_key: Path | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.boot_timeout = boot_timeout
        self.extra_args = extra_args or []
        self.ssh_key = ssh_key
        self.ssh_port: PortLease | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.consoles: dict[str, ConsoleLogger] = {}
        self._reader: threading.Thread | None = None
        run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def fvp_log(self) -> Path:
        return self.run_dir / "fvp.log"

    def console_log(self, alias: str) -> Path:
        return self.run_dir / f"{alias}.log"

    def _alias(self, terminal: str) -> str:
        for alias, name in self.config.consoles.items():
            if name == terminal:
                return alias
        return terminal

    def command(self, ssh_port: int | None) -> list[str]:
        return fvp_command(self.config, ssh_port) + self.extra_args

    def _start(self, wait: bool) -> None:
        """The FVP, and a logger on each console it announces."""
        self.ssh_port = allocate_port()
        command = self.command(self.ssh_port.port)
        (self.run_dir / "fvp-command.txt").write_text(" ".join(command) + "\n")
        self.process = subprocess.Popen(
            command,
            cwd=self.config.directory,
            env=fvp_environment(self.config),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        if wait:
            self._wait_for_boot()

    def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with open(self.fvp_log, "ab") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                match = PORT_ANNOUNCEMENT.match(line)
                if match:
                    terminal = match.group(1).decode()
                    alias = self._alias(terminal)
                    logger = ConsoleLogger(alias, int(match.group(2)), self.console_log(alias))
                    self.consoles[alias] = logger
                    logger.start()

    def boot_console(self) -> Path:
        return self.console_log("default")

    def emulator_log(self) -> Path:
        return self.fvp_log

    def logs(self) -> list[Path]:
        return sorted(self.run_dir.glob("*.log"))

    def console_logs(self) -> dict[str, Path]:
        return {alias: self.console_log(alias) for alias in self.consoles}

    def rse_logs(self) -> tuple[Path | None, Path | None]:
        """The RSE's own firmware runs in the FVP: its UART is the console aliased "rse"; it
        writes no JSON events."""
        return (self.console_log("rse") if "rse" in self.consoles else None), None

    def login_key(self) -> Path | None:
        return self.ssh_key

    def open_console(self) -> socket.socket:
        default = self.config.default_console or "default"
        while default not in self.consoles:
            threading.Event().wait(0.1)
        return socket.create_connection(("127.0.0.1", self.consoles[default].port))

    def target(self) -> SSHTarget:
        from .ssh_target import SSHTarget  # paramiko: loaded when a machine is reached

        assert self.ssh_port is not None
        return SSHTarget("127.0.0.1", self.ssh_port.port, self.ssh_key).connect()

    def stop(self) -> None:
        for console in self.consoles.values():
            console.close()
        stop_group(self.process, grace=15)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.ssh_port is not None:
            self.ssh_port.release()
