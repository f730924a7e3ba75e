"""Boot an Arm FVP from a .fvpconf, or QEMU from a qemuboot.conf or the dev image (the default).

CONFIG is a .fvpconf (meta-arm's fvpboot), a qemuboot.conf (Yocto's, or the dev image's that
image build writes beside its manifest), or a dev image (its directory or manifest.json);
without it, the dev image of this checkout (built if needed). Emulator arguments after --
need a CONFIG before them. Headless by default: once the machine is up it writes machine.json
in the run directory (SSH host, port, user and key, console and RSE log paths, pids), prints
the SSH command and where the logs are, and runs until SIGINT or SIGTERM, which shut the
machine down and reap every process.
--console attaches the default console to this terminal instead (Ctrl-] leaves);
--dry-run prints the exact command line and starts nothing.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
from pathlib import Path
from types import FrameType

from ..errors import UsageError
from ..machine import run_fvp as runner
from ..machine.fvp import FvpMachine
from ..machine.ports import allocate_port
from ..machine.qemu import QemuConfig, QemuMachine
from ..paths import new_run_dir, project_root
from . import debian

NAME = "run-fvp"
HELP = "boot an FVP (.fvpconf), or QEMU (qemuboot.conf, or the dev image by default)"
EXAMPLES = (
    "",
    "--console build/tmp_baremetal/deploy/images/fvp-rd-kronos/"
    "baremetal-image-fvp-rd-kronos.fvpconf",
    "core-image-minimal-qemuarm64.qemuboot.conf --dry-run",
    "image.qemuboot.conf -- -smp 4",
)
ARCHITECTURES = ("amd64", "arm64")

logger = logging.getLogger(__name__)


def setup_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        type=Path,
        metavar="CONFIG",
        help=".fvpconf, qemuboot.conf or dev image (default: this checkout's dev image)",
    )
    parser.add_argument(
        "emulator_args",
        nargs="*",
        metavar="-- EMULATOR_ARG",
        help="appended to the emulator's command line",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the command line, run nothing"
    )
    parser.add_argument("--console", action="store_true", help="attach the default console")
    parser.add_argument("--timeout", type=float, help="boot timeout in seconds")
    parser.add_argument("--run-dir", type=Path, help="where the logs go (default: a new runs/ dir)")
    parser.add_argument(
        "--arch", default="amd64", choices=ARCHITECTURES, help="dev image architecture (no CONFIG)"
    )
    parser.add_argument("--append", default="", help="extra kernel command line (QEMU)")
    parser.add_argument("--no-snapshot", action="store_true", help="write to the disk image (QEMU)")
    parser.add_argument("--kvm", action="store_true", help="use KVM instead of TCG (QEMU)")


def _config_path(args: argparse.Namespace) -> Path:
    if args.config is not None:
        if str(args.config).startswith("-"):
            # argparse took the first argument after "--" for CONFIG.
            raise UsageError(
                f"{args.config} is no CONFIG: emulator arguments after -- need a CONFIG first",
                args.command_prog,
            )
        return Path(args.config).resolve()
    from ..image_build import build_image

    project_root()  # the dev image is built from the checkout: before any package is installed
    debian.ensure(debian.image(args.arch))
    return build_image(args.arch)


def run(args: argparse.Namespace) -> int:
    config_path = _config_path(args)
    config = runner.read_config(config_path)
    options = runner.BootOptions(
        boot_timeout=args.timeout,
        append=args.append,
        snapshot=not args.no_snapshot,
        kvm=args.kvm,
        extra_args=tuple(args.emulator_args),
    )
    if not args.dry_run:  # the emulator must be there before anything starts
        if isinstance(config, QemuConfig):
            debian.ensure(debian.for_qemu(config.qemu))
        runner.check_emulator(config)
    run_dir = args.run_dir or new_run_dir("machine")
    machine = runner.make_machine(config, run_dir, options)
    if args.dry_run:
        with allocate_port() as lease:  # the port a real run would have got
            print(shlex.join(machine.command(lease.port)))
        return 0
    return _run_machine(machine, config_path, run_dir, args.console)


def _run_machine(
    machine: QemuMachine | FvpMachine, config_path: Path, run_dir: Path, console: bool
) -> int:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too, explicitly: a shell starts a background job with SIGINT ignored, and Python
    # then never turns it into KeyboardInterrupt.
    previous = signal.signal(signal.SIGTERM, on_signal)
    previous_int = signal.signal(signal.SIGINT, on_signal)
    info_path = run_dir / runner.MACHINE_JSON
    info_path.unlink(missing_ok=True)  # a previous run's, in a reused run directory
    logger.info(f"Run directory: {run_dir}")
    try:
        if console:
            runner.start(machine, wait=False)
            print("Attached to the console; Ctrl-] leaves (the machine is then shut down).")
            runner.attach_console(machine)
            return 0
        logger.info("Booting ...")
        runner.start(machine)
        info = runner.machine_info(machine, config_path)
        runner.write_machine_json(run_dir, info)
        print(f"Machine up. SSH: {runner.ssh_command(info)}", flush=True)
        print("Logs: " + ", ".join(str(p) for p in sorted(run_dir.glob("*.log"))))
        print(f"Machine description: {info_path}", flush=True)
        logger.info("SIGINT or SIGTERM shuts it down.")
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):  # a second one must not cut the stop short
            signal.signal(number, signal.SIG_IGN)
        machine.stop()
        info_path.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        logger.info("Machine stopped.")
    return 0
