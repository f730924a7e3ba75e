"""LAVA job definitions for a test farm, and LAVA's own check of them.

  lava job fvp FVPCONF [--settings FILE] [--set NAME=VALUE]... [-o JOB.yaml]
  lava job qemu QEMUBOOT.conf [--settings FILE] [--set NAME=VALUE]... [-o JOB.yaml]
  lava check [--testdef] FILE...

`job fvp` boots the FVP of a meta-arm .fvpconf (the RD-1 AE image's), `job qemu` the machine of a
qemuboot.conf (the Yocto qemuarm64 image's, or the dev image's beside its manifest.json); both
run the test definition lava/testdefs/parsec-tls-demo.yaml. The farm's settings (images_url,
fvp_docker, timeouts, device_type, ...; see lava/farm-settings.example.yml) come from a YAML
file and --set; the test definition comes from the project's repository at this checkout's
commit unless testdef_repository and testdef_revision say otherwise. The job is plain LAVA YAML,
on standard output or in the -o file.

`check` validates job definitions (or, with --testdef, test definitions) with LAVA's own schema,
Debian's lava-common, and prints one line per file; exit status 1 if any is invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UserError
from ..lava import check, jobs
from . import debian

NAME = "lava"
HELP = "LAVA job definitions for a test farm (FVP, QEMU), checked with LAVA's own schema"
MACHINES = {"fvp": jobs.fvp_job, "qemu": jobs.qemu_job}


def setup_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="lava_action", required=True, metavar="ACTION")
    job = actions.add_parser("job", help="write a LAVA job definition", description=__doc__)
    job.add_argument("machine", choices=sorted(MACHINES), help="fvp or qemu")
    job.add_argument("config", type=Path, metavar="CONFIG", help=".fvpconf or qemuboot.conf")
    job.add_argument("--settings", type=Path, help="the farm's settings (YAML)")
    job.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting (repeatable; after the settings file)",
    )
    job.add_argument("-o", "--output", type=Path, help="write the job here (default: stdout)")
    checker = actions.add_parser("check", help="validate with LAVA's own schema")
    checker.add_argument("files", nargs="+", type=Path, metavar="FILE")
    checker.add_argument(
        "--testdef", action="store_true", help="the files are test definitions, not jobs"
    )


def run(args: argparse.Namespace) -> int:
    if args.lava_action == "job":
        settings = jobs.FarmSettings.load(args.settings, args.overrides)
        text = jobs.dump(MACHINES[args.machine](args.config, settings))
        if args.output is None:
            sys.stdout.write(text)
        else:
            try:
                args.output.write_text(text)
            except OSError as exc:
                raise UserError(f"cannot write {args.output}: {exc}") from None
        return 0
    debian.ensure(debian.LAVA)
    verdicts = check.check("testdef" if args.testdef else "job", args.files)
    for verdict in verdicts:
        print(verdict.line)
    return 0 if all(v.valid for v in verdicts) else 1
