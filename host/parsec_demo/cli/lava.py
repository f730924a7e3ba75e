"""LAVA job definitions for a test farm, and LAVA's own check of them.

  lava job fvp FVPCONF [--settings FILE] [--set NAME=VALUE]... [-o JOB.yaml]
  lava job qemu QEMUBOOT.conf [--settings FILE] [--set NAME=VALUE]... [-o JOB.yaml]
  lava check [--testdef | --device] FILE...
  lava device DEVICE-DICTIONARY.jinja2 [--job JOB.yaml] [-o device.yaml]
  lava results LAVA-RESULTS.yaml --job-id ID --machine NAME [-o DIR]
  lava run [--image DIR] [--run-dir DIR]

`job fvp` boots the FVP of a meta-arm .fvpconf (the RD-1 AE image's), `job qemu` the machine of a
qemuboot.conf (the Yocto qemuarm64 image's, or the dev image's beside its manifest.json); both
run the test definition lava/testdefs/parsec-tls-demo.yaml. The farm's settings (images_url,
fvp_docker, timeouts, device_type, ...; see lava/farm-settings.example.yml) come from a YAML
file and --set; the test definition comes from the project's repository at this checkout's
commit unless testdef_repository and testdef_revision say otherwise. The job is plain LAVA YAML,
on standard output or in the -o file.

--images-list FILE writes the local path of every file the job deploys, one per line, for the
step that publishes them at images_url.

`check` validates job definitions (or, with --testdef, test definitions; with --device, device
dictionaries such as lava/devices/qemu-parsec-demo.jinja2, rendered with lava-server's own
templates) with LAVA's own schema, Debian's lava-common, and prints one line per file; exit
status 1 if any is invalid. `device` writes the device configuration a dispatcher's lava-run
reads, rendered as lava-server renders it for a job (--job: its context variables).

`run` runs the dev image's QEMU job end to end here with LAVA's own dispatcher (lava-run, in a
Debian root of its own made once with mmdebstrap; needs root), with the device
lava/devices/local-qemu.jinja2, and writes the validation's reports of LAVA's results into the
run directory's report/; exit status 1 if a case failed.

`results` turns a LAVA job's results (`lavacli results ID --yaml`) into the validation's reports
in DIR (default lava-report): testresults.json, junit.xml and report.html, one case per LAVA
test case (LAVA's own actions included, so a failed boot is a failed case), and prints the
summary line; the exit status is 0 once they are written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ..errors import UserError
from ..lava import check, jobs
from ..lava import results as lava_results
from ..validate.reports import skipped_lines, summary_line
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
    job.add_argument(
        "--images-list", type=Path, help="write the local paths of the deployed files here"
    )
    checker = actions.add_parser("check", help="validate with LAVA's own schema")
    checker.add_argument("files", nargs="+", type=Path, metavar="FILE")
    kinds = checker.add_mutually_exclusive_group()
    kinds.add_argument(
        "--testdef", action="store_true", help="the files are test definitions, not jobs"
    )
    kinds.add_argument(
        "--device", action="store_true", help="the files are device dictionaries, not jobs"
    )
    device = actions.add_parser("device", help="render a device dictionary as lava-server does")
    device.add_argument("dictionary", type=Path, metavar="DEVICE-DICTIONARY.jinja2")
    device.add_argument("--job", type=Path, help="render for this job's context")
    device.add_argument("-o", "--output", type=Path, help="(default: stdout)")
    local = actions.add_parser("run", help="run the dev image's job here with lava-run")
    local.add_argument(
        "--image", type=Path, help="a dev image directory (default: this checkout's)"
    )
    local.add_argument("--run-dir", type=Path, help="where the logs go (default: a new runs/ dir)")
    results = actions.add_parser("results", help="LAVA's results of a job as the reports")
    results.add_argument("results", type=Path, metavar="LAVA-RESULTS.yaml")
    results.add_argument("--job-id", required=True, help="the LAVA job's id")
    results.add_argument("--machine", required=True, help="the machine, in the reports' names")
    results.add_argument(
        "-o", "--output", type=Path, default=Path("lava-report"), help="(default: lava-report)"
    )


def run(args: argparse.Namespace) -> int:
    if args.lava_action == "job":
        settings = jobs.FarmSettings.load(args.settings, args.overrides)
        job = MACHINES[args.machine](args.config, settings)
        text = jobs.dump(job)
        if args.output is None:
            sys.stdout.write(text)
        else:
            _write(args.output, text)
        if args.images_list is not None:
            files = jobs.deployed_files(job, args.config)
            _write(args.images_list, "".join(f"{path}\n" for path in files))
        return 0
    if args.lava_action == "results":
        written = lava_results.write_reports(
            lava_results.read(args.results), args.output, args.job_id, args.machine
        )
        print(summary_line(written))
        for line in skipped_lines(written):
            print(line)
        return 0
    debian.ensure(debian.LAVA)
    if args.lava_action == "run":
        return _run_locally(args)
    if args.lava_action == "device":
        context = {}
        if args.job is not None:
            try:
                context = dict(yaml.safe_load(args.job.read_text()).get("context") or {})
            except (OSError, AttributeError, yaml.YAMLError) as exc:
                raise UserError(f"cannot read the job {args.job}: {exc}") from None
        text = check.render_device(args.dictionary, context)
        if args.output is None:
            sys.stdout.write(text)
        else:
            _write(args.output, text)
        return 0
    kind = "testdef" if args.testdef else "device" if args.device else "job"
    verdicts = check.check(kind, args.files)
    for verdict in verdicts:
        print(verdict.line)
    return 0 if all(v.valid for v in verdicts) else 1


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from None


def _run_locally(args: argparse.Namespace) -> int:
    from ..image_build import build_image
    from ..lava import local_run
    from ..paths import new_run_dir

    debian.ensure(debian.image("amd64"))
    image = args.image or build_image("amd64")
    run_dir = args.run_dir or new_run_dir("lava-run")
    run_dir.mkdir(parents=True, exist_ok=True)
    written, report = local_run.run(image, run_dir)
    print(summary_line(written))
    for line in skipped_lines(written):
        print(line)
    print(f"reports in {report}; lava-run's log {run_dir / 'lava-run.log'}")
    return 0 if all(r.status in ("PASSED", "SKIPPED") for r in written) else 1
