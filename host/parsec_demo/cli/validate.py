"""The layer's oeqa runtime cases against the dev VM, with reports.

Boots the dev image (built first unless --image names one) under QEMU with the RSE model beside
it, runs the cases in meta-parsec-demo/lib/oeqa/runtime/cases through the project's oeqa
stand-in, and writes testresults.json (oeqa's format), junit.xml and report.html into
<run directory>/report, beside the machine's logs (or into --report-dir).

--oe-core POKY runs them as testimage does, through that poky checkout: its runqemu boots the
dev image's qemuboot.conf, the layer's testimage controller (ParsecDemoQemuTarget) starts the
RSE model beside it, poky's OESSHTarget (ssh, scp) runs the commands, and poky's ping and ssh
cases run before the layer's, in its OERuntimeTestContext. No Yocto build is needed.

Needs the project's checkout (the cases are in its layer). Exit status 1 when a test failed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from . import debian

NAME = "validate"
HELP = "the layer's oeqa cases against the dev VM; reports in <run directory>/report"
ARCHITECTURES = ("amd64", "arm64")
EXAMPLES = (
    "",
    "--module parsec_demo_handshake --report-dir reports",
    "--oe-core ~/poky",
)

logger = logging.getLogger(__name__)


def setup_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image", type=Path, help="dev image directory or its manifest.json (default: build it)"
    )
    parser.add_argument(
        "--arch",
        default="amd64",
        choices=ARCHITECTURES,
        help="architecture of the dev image to build (default: amd64; --image: its own)",
    )
    parser.add_argument(
        "--report-dir", type=Path, help="where the reports go (default: <run directory>/report)"
    )
    parser.add_argument(
        "--oe-core",
        type=Path,
        metavar="POKY",
        help="a poky checkout: boot with its runqemu and the layer's testimage controller, "
        "run the cases with its oeqa",
    )
    parser.add_argument(
        "--module",
        action="append",
        help="case module to run (repeatable; default: all of the layer's; an unknown one is "
        "an error before anything boots)",
    )


def run(args: argparse.Namespace) -> int:
    from ..image_build import ImageManifest, build_image
    from ..validate import reports
    from ..validate.command import run_validation
    from ..validate.oe_core import check_oe_core
    from ..validate.runner import cases_dir, check_modules

    # The checkout is there and the cases named exist, before anything is built or booted.
    check_modules(cases_dir(), args.module)
    if args.oe_core is not None:
        check_oe_core(args.oe_core)
    if args.image is not None:  # its manifest says what it is
        image: Path = args.image
        manifest = ImageManifest.load(image)
        arch = manifest.arch
        debian.ensure(debian.for_qemu(manifest.qemu))
    else:
        arch = args.arch
        debian.ensure(debian.dev_machine(arch))
        image = build_image(arch)
    results, run_dir = run_validation(image, args.report_dir, args.module, args.oe_core, arch)
    report_dir = args.report_dir or run_dir / "report"
    print(f"{reports.summary_line(results)}; reports in {report_dir}")
    for line in reports.skipped_lines(results):
        print(line)
    print(f"machine logs in {run_dir}")
    if not any(r.status in reports.PASSED_STATUSES for r in results):
        print("no case passed: nothing was checked, which is a failure")
        return 1
    return 1 if reports.failures(results) else 0
