"""LAVA job definitions for a test farm, LAVA's own check of them, a run with LAVA's own
dispatcher here, and LAVA's results as the validation's reports.

See parsec-demo lava ACTION --help for each action.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from parsec_service.cli_help import add_command

from ..errors import UserError
from ..lava import check, jobs
from ..lava import results as lava_results
from ..validate.reports import skipped_lines, summary_line
from . import debian

NAME = "lava"
HELP = "LAVA job definitions for a test farm (FVP, QEMU), checked with LAVA's own schema"
MACHINES = {"fvp": jobs.fvp_job, "qemu": jobs.qemu_job}
EXAMPLES = (
    "job qemu image.qemuboot.conf --settings farm.yml -o job.yaml",
    "check job.yaml",
    "run",
)


JOB = """Write the LAVA job that boots a machine and runs the test definition
lava/testdefs/parsec-tls-demo.yaml on it: `fvp` the FVP of a meta-arm .fvpconf (the RD-1 AE
image's), `qemu` the machine of a qemuboot.conf (the Yocto qemuarm64 image's, or the dev
image's beside its manifest.json).

The farm's settings (images_url, fvp_docker, timeouts, device_type, ...; see
lava/farm-settings.example.yml) come from a YAML file, then --set. The test definition comes
from the project's repository at this checkout's commit unless testdef_repository and
testdef_revision say otherwise. The job is plain LAVA YAML, on standard output or in the -o
file; --images-list writes the local path of every file it deploys, one per line, for the step
that publishes them at images_url."""

CHECK = """Validate LAVA job definitions (or, with --testdef, test definitions; with --device,
device dictionaries such as lava/devices/qemu-parsec-demo.jinja2, rendered with lava-server's
own templates) with LAVA's own schema (Debian's lava-common). One line per file; exit status 1
if any is invalid."""

DEVICE = """Write the device configuration a dispatcher's lava-run reads: the device dictionary
rendered as lava-server renders it for a job (--job: with that job's context variables)."""

RUN = """Run the dev image's QEMU job end to end on this machine with LAVA's own dispatcher
(lava-run, in a Debian root of its own made once with mmdebstrap; needs root) and the device
lava/devices/local-qemu.jinja2. The job is 'lava job qemu' of the image's qemuboot.conf, with
the farm settings given by --set (qemu_cpus=1: a one-vCPU guest, for a busy machine). The
validation's reports of LAVA's results go to the run directory's report/; exit status 1 if a
case failed."""

RESULTS = """Turn a LAVA job's results (lavacli results ID --yaml) into the validation's reports:
testresults.json, junit.xml and report.html, one case per LAVA test case (LAVA's own actions
included, so a failed boot is a failed case), and print the summary line. The exit status is 0
once they are written."""


def setup_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="lava_action", required=True, metavar="ACTION")
    job = add_command(
        actions,
        "job",
        "write a LAVA job definition",
        [
            "qemu build/tmp/deploy/images/qemuarm64/core-image-minimal-qemuarm64.qemuboot.conf "
            "--settings farm.yml -o qemu-job.yaml",
            "fvp baremetal-image-fvp-rd-kronos.fvpconf --settings farm.yml "
            "--set images_url=https://images.example.org/rd1ae",
        ],
        JOB,
    )
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
    checker = add_command(
        actions,
        "check",
        "validate jobs, test definitions or devices with LAVA's own schema",
        ["qemu-job.yaml fvp-job.yaml", "--testdef lava/testdefs/parsec-tls-demo.yaml"],
        CHECK,
    )
    checker.add_argument("files", nargs="+", type=Path, metavar="FILE")
    kinds = checker.add_mutually_exclusive_group()
    kinds.add_argument(
        "--testdef", action="store_true", help="the files are test definitions, not jobs"
    )
    kinds.add_argument(
        "--device", action="store_true", help="the files are device dictionaries, not jobs"
    )
    device = add_command(
        actions,
        "device",
        "render a device dictionary as lava-server does",
        ["lava/devices/local-qemu.jinja2 --job qemu-job.yaml -o device.yaml"],
        DEVICE,
    )
    device.add_argument("dictionary", type=Path, metavar="DEVICE-DICTIONARY.jinja2")
    device.add_argument("--job", type=Path, help="render for this job's context")
    device.add_argument("-o", "--output", type=Path, help="(default: stdout)")
    local = add_command(
        actions,
        "run",
        "run the dev image's job here with lava-run",
        [
            "",
            "--image ~/.cache/parsec-demo/images/amd64-... --run-dir runs/lava",
            "--set qemu_cpus=1",
        ],
        RUN,
    )
    local.add_argument(
        "--image", type=Path, help="a dev image directory (default: this checkout's)"
    )
    local.add_argument("--run-dir", type=Path, help="where the logs go (default: a new runs/ dir)")
    local.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a farm setting of the job (repeatable), as for 'lava job'",
    )
    results = add_command(
        actions,
        "results",
        "LAVA's results of a job as the validation's reports",
        ["results-4242.yaml --job-id 4242 --machine fvp-rd-kronos -o lava-report"],
        RESULTS,
    )
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

    jobs.FarmSettings.load(None, args.overrides)  # a wrong setting, before any work
    debian.ensure(debian.image("amd64"))
    image = args.image or build_image("amd64")
    run_dir = args.run_dir or new_run_dir("lava-run")
    run_dir.mkdir(parents=True, exist_ok=True)
    written, report = local_run.run(image, run_dir, args.overrides)
    print(summary_line(written))
    for line in skipped_lines(written):
        print(line)
    print(f"reports in {report}; lava-run's log {run_dir / 'lava-run.log'}")
    return 0 if all(r.status in ("PASSED", "SKIPPED") for r in written) else 1
