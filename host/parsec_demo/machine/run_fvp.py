"""What ``run-fvp`` does with a machine, as a library: read the configuration a build wrote,
make the machine of it, start it, attach a terminal to its console, and describe the running
machine in ``machine.json`` for scripts.

A configuration is a ``.fvpconf`` (meta-arm's fvpboot: an Arm FVP), a ``qemuboot.conf`` (Yocto:
QEMU) or a dev image (its directory or ``manifest.json``: QEMU). Every way it can be wrong
(missing, unreadable, not what its name says, an emulator that is not installed) is a
:class:`MachineConfigError` in one line. The command line is in ``parsec_demo.cli.run_fvp``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .fvp import FvpConfig, FvpMachine, fvp_command, fvp_environment
from .qemu import QemuConfig, QemuMachine, load_config

#: The file in the run directory that describes the machine while it is up.
MACHINE_JSON = "machine.json"
SSH_HOST = "127.0.0.1"
SSH_USER = "root"


class MachineConfigError(UserError):
    pass


@dataclass(frozen=True)
class BootOptions:
    """How to run the machine, beyond what its configuration says."""

    boot_timeout: float | None = None  # default: 180 s for QEMU, 3600 s for an FVP
    append: str = ""  # QEMU: more kernel command line
    snapshot: bool = True  # QEMU: never write to the disk image
    kvm: bool = False  # QEMU: KVM instead of TCG
    extra_args: tuple[str, ...] = ()  # appended to the emulator's command line


def is_fvpconf(path: Path) -> bool:
    return path.suffix == ".fvpconf"


def read_config(path: Path) -> FvpConfig | QemuConfig:
    """The machine configuration at ``path``, checked enough to know it can be booted."""
    if not path.exists():
        raise MachineConfigError(f"{path}: no such file or directory")
    if is_fvpconf(path):
        try:
            return FvpConfig.load(path)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
            raise MachineConfigError(f"{path}: cannot read it as an .fvpconf: {exc}") from exc
    config = load_config(path)  # a qemuboot.conf or the dev image's manifest explains itself
    config.check_files()
    return config


def make_machine(
    config: FvpConfig | QemuConfig, run_dir: Path, options: BootOptions
) -> QemuMachine | FvpMachine:
    if isinstance(config, FvpConfig):
        return FvpMachine(config, run_dir, options.boot_timeout or 3600.0, list(options.extra_args))
    return QemuMachine(
        config,
        run_dir,
        snapshot=options.snapshot,
        extra_cmdline=options.append,
        accel="kvm" if options.kvm else "tcg",
        boot_timeout=options.boot_timeout or 180.0,
        extra_args=list(options.extra_args),
    )


def check_emulator(config: FvpConfig | QemuConfig) -> None:
    """MachineConfigError unless the emulator of ``config`` can be found, the way starting it
    will look for it (an FVP: from the .fvpconf's directory, on the .fvpconf's PATH)."""
    if isinstance(config, FvpConfig):
        program = fvp_command(config, None)[0]
        directory = config.directory
        search = fvp_environment(config).get("PATH", os.defpath)
        hint = "(check the .fvpconf's fvp-bindir and exe, or PATH)"
    else:
        program = config.qemu
        directory = Path.cwd()
        search = os.environ.get("PATH", os.defpath)
        hint = "(is QEMU installed?)"
    if os.sep in program:
        path = directory / program
        found = path.is_file() and os.access(path, os.X_OK)
    else:
        found = shutil.which(program, path=search) is not None
    if not found:
        raise MachineConfigError(f"cannot run {program}: no such program {hint}")


def start(machine: QemuMachine | FvpMachine, wait: bool = True) -> None:
    """Start ``machine`` (and with ``wait``, until it is up); an emulator that is not
    installed is a MachineConfigError, a failed boot a BootError."""
    try:
        machine.start(wait)
    except FileNotFoundError as exc:
        if exc.filename is None:
            raise
        raise MachineConfigError(
            f"cannot run {exc.filename}: no such program {machine.program_hint}"
        ) from exc


def machine_info(machine: QemuMachine | FvpMachine, config_path: Path) -> dict[str, Any]:
    """What scripts need to use the running machine (the keys README's run-fvp section lists)."""
    assert machine.ssh_port is not None and machine.process is not None
    key = machine.login_key()
    rse_console, rse_events = machine.rse_logs()
    info: dict[str, Any] = {
        "kind": machine.kind,
        "config": str(config_path),
        "run_dir": str(machine.run_dir),
        "pid": os.getpid(),
        "emulator_pid": machine.process.pid,
        "ssh_host": SSH_HOST,
        "ssh_port": machine.ssh_port.port,
        "ssh_user": SSH_USER,
        "ssh_key": str(key) if key else None,
        "emulator_log": str(machine.emulator_log()),
        "consoles": {name: str(log) for name, log in machine.console_logs().items()},
        "rse_console_log": str(rse_console) if rse_console else None,
        "rse_events_log": str(rse_events) if rse_events else None,
    }
    return info


def ssh_command(info: dict[str, Any]) -> str:
    key = f"-i {info['ssh_key']} " if info["ssh_key"] else ""
    return (
        f"ssh {key}-p {info['ssh_port']} -o StrictHostKeyChecking=no "
        f"{info['ssh_user']}@{info['ssh_host']}"
    )


def write_machine_json(run_dir: Path, info: dict[str, Any]) -> Path:
    """``machine.json``, written whole (a reader never sees half of it)."""
    path = run_dir / MACHINE_JSON
    partial = path.with_name(f".{MACHINE_JSON}.{os.getpid()}")
    partial.write_text(json.dumps(info, indent=2) + "\n")
    partial.replace(path)
    return path


def attach_console(machine: QemuMachine | FvpMachine) -> None:
    """This terminal on the machine's default console until Ctrl-] (or the console closes)."""
    import pexpect.fdpexpect

    sock = machine.open_console()
    pexpect.fdpexpect.fdspawn(sock.fileno()).interact(escape_character=chr(29))
