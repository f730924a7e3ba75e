"""``./tools/run-fvp``: boot a machine (Arm FVP or QEMU) from the artifacts its build wrote.

    run-fvp [options] [CONFIG] [-- extra emulator arguments]

CONFIG is a ``.fvpconf`` (meta-arm's fvpboot), a ``qemuboot.conf`` (Yocto), or a dev image
(its directory or ``manifest.json``); without it, the dev image of this checkout (built if
needed). Headless by default: once the machine is up it prints the SSH command and where the
logs are, and runs until SIGINT or SIGTERM, which shut the machine down and reap every process.
``--console`` attaches the default console to this terminal instead (Ctrl-] leaves);
``--dry-run`` prints the exact command line and starts nothing.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

from ..paths import new_run_dir
from .fvp import FvpConfig, FvpMachine
from .lifecycle import BootError
from .ports import allocate_port
from .qemu import QemuConfig, QemuMachine, load_config


def _machine(args: argparse.Namespace, run_dir: Path) -> QemuMachine | FvpMachine:
    config_path = args.config.resolve() if args.config else None
    if config_path is None:
        from ..image_build import build_image

        config_path = build_image(args.arch)
    if config_path.suffix == ".fvpconf":
        return FvpMachine(FvpConfig.load(config_path), run_dir, args.timeout or 3600.0, args.extra)
    config: QemuConfig = load_config(config_path)
    return QemuMachine(
        config,
        run_dir,
        snapshot=not args.no_snapshot,
        extra_cmdline=args.append,
        accel="kvm" if args.kvm else "tcg",
        boot_timeout=args.timeout or 180.0,
        extra_args=args.extra,
    )


def _attach(machine: QemuMachine | FvpMachine) -> None:
    import pexpect.fdpexpect

    if isinstance(machine, QemuMachine):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for _ in range(100):
            try:
                sock.connect(str(machine.console_socket))
                break
            except OSError:
                threading.Event().wait(0.1)
    else:
        default = machine.config.default_console or "default"
        while default not in machine.consoles:
            threading.Event().wait(0.1)
        sock = socket.create_connection(("127.0.0.1", machine.consoles[default].port))
    print("Attached to the console; Ctrl-] leaves (the machine is then shut down).", flush=True)
    pexpect.fdpexpect.fdspawn(sock.fileno()).interact(escape_character=chr(29))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(
        prog="run-fvp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", type=Path, help=".fvpconf, qemuboot.conf or dev image")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the command line, run nothing"
    )
    parser.add_argument("--console", action="store_true", help="attach the default console")
    parser.add_argument("--timeout", type=float, help="boot timeout in seconds")
    parser.add_argument("--run-dir", type=Path, help="where the logs go (default: a new runs/ dir)")
    parser.add_argument("--arch", default="amd64", help="dev image architecture (no CONFIG)")
    parser.add_argument("--append", default="", help="extra kernel command line (QEMU)")
    parser.add_argument("--no-snapshot", action="store_true", help="write to the disk image (QEMU)")
    parser.add_argument("--kvm", action="store_true", help="use KVM instead of TCG (QEMU)")
    args = parser.parse_args(argv)
    args.extra = extra
    run_dir = args.run_dir or new_run_dir("machine")
    machine = _machine(args, run_dir)
    if args.dry_run:
        with allocate_port() as lease:  # the port a real run would have got
            print(shlex.join(machine.command(lease.port)))
        return 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    print(f"Run directory: {run_dir}", flush=True)
    try:
        if args.console:
            machine.start(wait=False)
            _attach(machine)
            return 0
        print("Booting ...", flush=True)
        machine.start()
        assert machine.ssh_port is not None
        key = getattr(machine.config, "ssh_key", None) or getattr(machine, "ssh_key", None)
        key_option = f"-i {key} " if key else ""
        print(
            f"Machine up. SSH: ssh {key_option}-p {machine.ssh_port.port} "
            "-o StrictHostKeyChecking=no root@127.0.0.1",
            flush=True,
        )
        print("Logs: " + ", ".join(str(p) for p in sorted(run_dir.glob("*.log"))), flush=True)
        print("SIGINT or SIGTERM shuts it down.", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    except BootError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        machine.stop()
        print("Machine stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
