"""Starting and stopping processes: the project's daemons (for the demo, benchmarks, tests), and
the one way every process the toolkit starts in the background is started and stopped.

A process is started (``spawn``) in a session of its own, with its output appended to its log
file and no standard input, and is stopped (``stop_group``) with SIGTERM to its whole process
group, then SIGKILL if it does not go within a grace period. A service is ready when its socket
accepts a connection; one that dies or hangs during start-up is reported with the last lines
of its log and the log's path, so the failure explains itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .logtail import log_failure


class ServiceError(UserError):
    pass


def spawn(
    command: Sequence[str],
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``command`` in the background, in a session (and process group) of its own, its standard
    output and error appended to ``log_path``, its standard input empty. It is no service of
    the service manager this toolkit may run under: ``NOTIFY_SOCKET`` is not passed on, so a
    daemon's READY=1 or STOPPING=1 never reaches the manager of, say, a CI runner's unit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(os.environ if env is None else env)
    child_env.pop("NOTIFY_SOCKET", None)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=child_env,
            start_new_session=True,
        )


def stop_group(process: subprocess.Popen[bytes] | None, grace: float) -> int | None:
    """SIGTERM to the process group ``spawn`` made (daemons and emulators stop cleanly on it),
    SIGKILL after ``grace`` seconds; the exit status (None without a process)."""
    if process is None:
        return None
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def socket_accepts(path: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def python_command(*args: str) -> list[str]:
    """The command line of this toolkit's CLI, run by the current interpreter."""
    return [sys.executable, "-m", "parsec_demo", *args]


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    socket_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if needed (``stop_group``); returns the exit status."""
        status = stop_group(self.process, grace)
        assert status is not None
        return status

    def kill(self) -> None:
        """SIGKILL: the abrupt death that durability tests need."""
        if self.alive():
            self.process.kill()
        self.process.wait()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_service(
    name: str, command: Sequence[str], log_path: Path, socket_path: Path, timeout: float = 20.0
) -> Service:
    service = Service(name, spawn(command, log_path), log_path, socket_path)
    deadline = time.monotonic() + timeout
    while not socket_accepts(socket_path):
        if not service.alive():
            headline = f"{name} exited with status {service.process.returncode} during start-up"
            raise ServiceError(log_failure(headline, log_path))
        if time.monotonic() > deadline:
            service.stop()
            raise ServiceError(log_failure(f"{name} not ready after {timeout:.0f} s", log_path))
        time.sleep(0.02)
    return service


def start_rse_model(
    run_dir: Path,
    slots: int = 32,
    name: str = "rse",
    max_keys: int | None = None,
    max_connections: int | None = None,
) -> Service:
    """The RSE model with its console, events and store in ``run_dir``.

    ``max_keys`` and ``max_connections`` are passed on when given, else the model's defaults hold.
    """
    socket_path = run_dir / f"{name}.sock"
    command = python_command(
        "rse",
        "serve",
        "--socket",
        str(socket_path),
        "--store",
        str(run_dir / f"{name}-store"),
        "--log",
        str(run_dir / f"{name}-console.log"),
        "--events",
        str(run_dir / f"{name}-events.jsonl"),
        "--slots",
        str(slots),
    )
    if max_keys is not None:
        command += ["--max-keys", str(max_keys)]
    if max_connections is not None:
        command += ["--max-connections", str(max_connections)]
    return start_service(name, command, run_dir / f"{name}-process.log", socket_path)


def parsec_config_text(
    auth_type: str = "UnixPeerCredentials",
    admins: tuple[str, ...] = ("0",),
    log_level: str = "info",
    extra_core: str = "",
) -> str:
    """A service configuration in Parsec's format, as the demo and the tests use it."""
    admin_list = ", ".join(f'{{ name = "{name}" }}' for name in admins)
    return f"""# Parsec service configuration (Parsec config.toml format)
[core_settings]
allow_root = true
log_level = "{log_level}"
log_error_details = true
{extra_core}
[listener]
listener_type = "DomainSocket"
timeout = 200

[authenticator]
auth_type = "{auth_type}"
admins = [{admin_list}]

[[key_manager]]
name = "sqlite-manager"
manager_type = "SQLite"

[[provider]]
provider_type = "TrustedService"
key_info_manager = "sqlite-manager"
"""


def start_parsec_service(
    run_dir: Path, rse_socket: Path, config_text: str | None = None, name: str = "parsec"
) -> Service:
    """The project's Parsec service, its key info manager and log in ``run_dir``."""
    config = run_dir / f"{name}-config.toml"
    if config_text is not None or not config.exists():
        config.write_text(config_text if config_text is not None else parsec_config_text())
    socket_path = run_dir / f"{name}.sock"
    command = python_command(
        "parsec",
        "serve",
        "--socket",
        str(socket_path),
        "--rse",
        str(rse_socket),
        "--store",
        str(run_dir / f"{name}-store"),
        "--config",
        str(config),
    )
    return start_service(name, command, run_dir / f"{name}.log", socket_path)
