"""Install the Debian packages a job needs, ahead of time (every command also does it for
itself before it starts). As root the missing packages are installed; otherwise the command
names them and fails. Jobs: build (the C programs), host-demo (demo --host), image (building
the dev image; another architecture adds user-mode emulation), machine (the image and its
emulator: demo, validate, run-fvp), lava (LAVA's schema for `parsec-demo lava check`), test
(everything the test suite uses).
"""

from __future__ import annotations

import argparse
import logging

from . import debian

NAME = "setup"
HELP = "install the Debian packages a job needs (as root), or name the missing ones"
EXAMPLES = ("host-demo", "machine image --arch arm64")
ARCHITECTURES = ("amd64", "arm64")

logger = logging.getLogger(__name__)


def setup_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "jobs",
        nargs="+",
        metavar="JOB",
        choices=sorted(debian.JOBS),
        help=f"what the packages are for: {', '.join(sorted(debian.JOBS))}",
    )
    parser.add_argument(
        "--arch", default="amd64", choices=ARCHITECTURES, help="dev image architecture"
    )


def run(args: argparse.Namespace) -> int:
    packages = [p for job in args.jobs for p in debian.JOBS[job](args.arch)]
    # The test suite's packages leave no service running or enabled: the suite starts its own.
    debian.ensure(packages, start_services="test" not in args.jobs)
    logger.debug(f"installed, all of them: {' '.join(sorted(set(packages)))}")
    return 0
