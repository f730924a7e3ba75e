"""Starting and stopping processes: the project's daemons (for the demo, benchmarks, tests), and
the one way every process the toolkit starts in the background is started and stopped.

A process is started (``spawn``) in a session of its own, with its output appended to its log
file and no standard input, and is stopped (``stop_group``) with SIGTERM to its whole process
group, then SIGKILL if it does not go within a grace period. A service is ready when its socket
accepts a connection; one that dies or hangs during start-up is reported with the last lines
of its log and the log's path, so the failure explains itself.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from parsec_demo_processes import (
    StartError,
    release_socket,
    socket_path,
    start_serving,
    stop_group,
)
from parsec_demo_rse import RseFiles, RseModel

from .errors import UserError


class ServiceError(UserError):
    pass


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
        """SIGTERM, wait, SIGKILL if needed (``stop_group``); returns the exit status. A socket
        that had to go to a private directory (``socket_path``) goes with it."""
        status = stop_group(self.process, grace)
        assert status is not None
        release_socket(self.socket_path)
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
    """``command`` in the background (``spawn``), once its socket accepts connections; a
    ServiceError with its log's last lines when it exits first or is not ready in time."""
    try:
        process = start_serving(name, command, log_path, socket_path, timeout)
    except StartError as exc:
        raise ServiceError(str(exc)) from None
    return Service(name, process, log_path, socket_path)


def start_rse_model(
    run_dir: Path,
    slots: int = 32,
    name: str = "rse",
    max_keys: int | None = None,
    max_connections: int | None = None,
) -> Service:
    """The RSE model, started as the testimage controller starts it (``parsec_demo_rse``'s
    ``RseModel``), with its files (``RseFiles``) in ``run_dir``.

    ``max_keys`` and ``max_connections`` are passed on when given, else the model's defaults hold.
    """
    options = ["--slots", str(slots)]
    if max_keys is not None:
        options += ["--max-keys", str(max_keys)]
    if max_connections is not None:
        options += ["--max-connections", str(max_connections)]
    model = RseModel(RseFiles(run_dir, name), [sys.executable, "-m", "parsec_rse_model"], options)
    try:
        model.start(timeout=20.0)
    except StartError as exc:
        raise ServiceError(str(exc)) from None
    assert model.process is not None
    files = model.files
    return Service(name, model.process, Path(files.process_log), Path(files.socket))


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
    """The project's Parsec service, its key info manager and log in ``run_dir``: the target
    package's own program (``parsec-demo-service serve``, as on the machine)."""
    config = run_dir / f"{name}-config.toml"
    if config_text is not None or not config.exists():
        config.write_text(config_text if config_text is not None else parsec_config_text())
    socket = Path(socket_path(run_dir, f"{name}.sock"))
    command = [
        sys.executable,
        "-m",
        "parsec_service",
        "serve",
        "--socket",
        str(socket),
        "--rse",
        str(rse_socket),
        "--store",
        str(run_dir / f"{name}-store"),
        "--config",
        str(config),
    ]
    return start_service(name, command, run_dir / f"{name}.log", socket)
