"""The demo's C programs for this machine: Mbed TLS 3.6 ssl_client1, ssl_server and
ssl_server2 with the layer's patches, and the Parsec SE driver (also built with ASan and
UBSan for the tests). Outputs in the user's cache, ~/.cache/parsec-demo/host/<hash of the
inputs>/bin, one log per step beside them in logs/; nothing is rebuilt until an input
changes. Prints the directory of the programs.
"""

from __future__ import annotations

import argparse

from ..paths import project_root
from . import debian

NAME = "build"
HELP = "build ssl_client1, ssl_server and the Parsec SE driver for this machine"
EXAMPLES = ("", "--force", "--check-patches")


def setup_parser(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    what.add_argument(
        "--check-patches", action="store_true", help="only check the layer's patches apply"
    )


def run(args: argparse.Namespace) -> int:
    from ..native_build import build_host, check_patches_apply

    project_root()  # before any package is installed
    debian.ensure(debian.BUILD)
    if args.check_patches:
        print("patches apply cleanly:", ", ".join(check_patches_apply()))
    else:
        print(build_host(force=args.force).bin_dir)
    return 0
