#
# SPDX-License-Identifier: MIT
#
"""The RSE model beside a machine: its files, how it is started and stopped, how QEMU reaches it.

On the real hardware the RSE is a security processor beside the application cores; elsewhere
the project's model of its crypto service plays that part on the host. This is the one launcher
of that model: the parsec-demo toolkit (host mode, the dev VM, ``run-fvp``, benchmarks) and the
layer's testimage controller (``ParsecDemoQemuTarget``) both start it here.

``RseFiles`` names what one model keeps in a run directory: its socket, key store, console log
(the evidence the cases read), JSON events (the same calls, for programs) and process log.
``RseModel`` starts the model (``parsec-demo-rse-model``, or any command line that takes the
same options) on those files and stops it. ``qemu_options`` attaches the model to a QEMU machine
as the virtio-serial port ``rse`` (``/dev/virtio-ports/rse`` inside).

Only the standard library, in Python that a build host's python3 runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from parsec_demo_processes import release_socket, socket_path, start_serving, stop_group

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Sequence

#: The RSE model's executable (the layer's parsec-demo-rse-model-native installs it).
RSE_MODEL = "parsec-demo-rse-model"
#: The name of the virtio-serial port the machine reaches the RSE through.
PORT_NAME = "rse"
#: Seconds the model may take to accept connections, and to stop after SIGTERM.
START_TIMEOUT = 30.0
STOP_GRACE = 10.0


class RseFiles:
    """What one RSE model keeps in ``directory``, its files named after ``name``: the socket
    (in a private temporary directory when the run directory's path is too long for one),
    the key store, the console log, the JSON events and the process's own output."""

    def __init__(self, directory: str | os.PathLike[str], name: str = "rse") -> None:
        self.directory = os.fspath(directory)
        self.name = name
        self.socket = self.path(f"{name}.sock")
        self.store = self.path(f"{name}-store")
        self.console_log = self.path(f"{name}-console.log")
        self.events_log = self.path(f"{name}-events.jsonl")
        self.process_log = self.path(f"{name}-process.log")

    def path(self, filename: str) -> str:
        return os.path.join(self.directory, filename)

    def make_socket_path_fit(self) -> None:
        """The socket in a private temporary directory if its path is too long
        (``parsec_demo_processes.socket_path``); ``release`` removes it."""
        self.socket = socket_path(self.directory, f"{self.name}.sock")

    def release(self) -> None:
        release_socket(self.socket)

    def options(self) -> list[str]:
        """The model's options that name these files."""
        return [
            "--socket", self.socket,
            "--store", self.store,
            "--log", self.console_log,
            "--events", self.events_log,
        ]  # fmt: skip


def qemu_options(socket_path: str, virtio_serial: str = "virtio-serial-pci") -> list[str]:
    """QEMU's options for the ``rse`` virtio-serial port on the model's socket (QEMU connects,
    and reconnects within a second if the model restarts)."""
    return [
        "-chardev", f"socket,id={PORT_NAME},path={socket_path},reconnect=1",
        "-device", f"{virtio_serial},id=vser0",
        "-device", f"virtserialport,bus=vser0.0,chardev={PORT_NAME},name={PORT_NAME}",
    ]  # fmt: skip


class RseModel:
    """The RSE model as a process: ``command`` (its executable, and any options of its own)
    with ``files``' options added; started in a process group of its own with its output in
    ``files.process_log``, ready when its socket accepts connections."""

    def __init__(
        self,
        files: RseFiles,
        command: Sequence[str] = (RSE_MODEL,),
        options: Sequence[str] = (),
    ) -> None:
        self.files = files
        self._program = list(command)
        self._options = list(options)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        """The model's whole command line, naming its files where they are now."""
        return [*self._program, *self.files.options(), *self._options]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the model and wait until it serves; a ``StartError`` with its log's last lines
        when it exits first or is not ready in time (it is then stopped)."""
        os.makedirs(self.files.directory, exist_ok=True)
        self.files.make_socket_path_fit()
        try:
            self.process = start_serving(
                self.files.name, self.command, self.files.process_log, self.files.socket, timeout
            )
        except BaseException:
            self.files.release()
            raise

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM, SIGKILL after ``grace`` seconds; the exit status (None if it never ran).
        Calling it again does nothing more."""
        status = stop_group(self.process, grace)
        self.files.release()
        return status
