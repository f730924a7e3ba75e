"""The dev image: a bootable Debian (bookworm) with the demo, made from Debian packages.

image build builds it into the user's cache, ~/.cache/parsec-demo/images/<arch>-<hash of its
inputs>/, unless an identical one exists, and prints that directory. Beside its
manifest.json it writes the image's qemuboot.conf
(parsec-demo-dev-image-<arch>.rootfs.qemuboot.conf), which Yocto's runqemu and run-fvp boot.
It needs root (mmdebstrap --mode=root) and this project's checkout; an image of another
architecture than this machine's builds under user-mode emulation (its Debian packages are
installed first).
"""

from __future__ import annotations

import argparse

from parsec_service.cli_help import add_command

from ..paths import project_root
from . import debian

NAME = "image"
HELP = "the dev image (Debian packages, bootable): image build"
EXAMPLES = ("build", "build --arch arm64 --force")
ARCHITECTURES = ("amd64", "arm64")


def setup_parser(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="image_command", required=True, metavar="COMMAND")
    build = add_command(
        commands,
        "build",
        "build it unless an identical one exists; prints its directory",
        ["", "--arch arm64", "--force"],
    )
    build.add_argument("--arch", default="amd64", choices=ARCHITECTURES, help="architecture")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")


def run(args: argparse.Namespace) -> int:
    from ..image_build import build_image

    assert args.image_command == "build"
    project_root()  # before any package is installed
    debian.ensure(debian.image(args.arch))
    print(build_image(args.arch, args.force))
    return 0
