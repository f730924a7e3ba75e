"""Benchmarks, each with a baseline measured in the same run (these machines are noisy, so no
figure is compared with a constant): rse (psa_verify_hash through the RSE model against
in-process verification), parsec (PsaVerifyHash through the Parsec service with 1 and 8
client processes, Python ones and the C parsec-se-driver-bench built with the SE driver: rates,
p50 and p99), handshake (full TLS handshakes with and without delegation),
boot (the dev image: build time, size, seconds to SSH). The table goes to standard output;
--profile DIR adds py-spy profiles of the service and the RSE model to parsec.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..paths import project_root
from . import debian

NAME = "bench"
HELP = "benchmarks with a baseline measured in the same run"
EXAMPLES = ("parsec", "rse --seconds 5", "parsec --profile runs/profiles")
BENCHMARKS = ("rse", "parsec", "handshake", "boot")


def setup_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=BENCHMARKS, help="what to measure")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="parsec only: then profile the Parsec service and the RSE model under 8 C clients "
        "with py-spy (stacks in DIR, top functions printed)",
    )


def run(args: argparse.Namespace) -> int:
    from ..bench import BENCHMARKS as benchmarks
    from ..bench import bench_parsec

    if args.profile is not None and args.what != "parsec":
        raise UserError("--profile profiles the parsec benchmark only")
    if args.what == "handshake":
        project_root()  # the demo's programs are built from the checkout
        debian.ensure(debian.BUILD + debian.HOST_DEMO)
    elif args.what == "parsec":
        project_root()  # and so is the SE driver's load generator
        debian.ensure(debian.BUILD)
    elif args.what == "boot":
        project_root()  # and so is the dev image
        debian.ensure(debian.dev_machine("amd64"))
    if args.what == "parsec":
        lines = bench_parsec(args.seconds, profile_dir=args.profile)
    else:
        lines = benchmarks[args.what](args.seconds)
    for line in lines:
        print(line, flush=True)
    return 0
