"""The dev image's LAVA job, run end to end on this machine by LAVA's own dispatcher.

``lava-run`` (Debian's ``lava-dispatcher``) runs in a Debian root file system of its own that
``mmdebstrap`` makes once into the build directory (the dispatcher, QEMU, the tools LAVA's QEMU
deploy uses: libguestfs with a kernel for its appliance, git), so that this machine gets none of
the dispatcher's two hundred packages. Into it are bound ``/dev``, ``/proc``, ``/sys``, this
checkout (the images, the test definition's repository, the run directory) and the toolkit's
interpreter (the RSE model the device's user command starts).

The device is ``lava/devices/local-qemu.jinja2`` (LAVA's qemu device type with the project's
user commands, no KVM, the model started without systemd), rendered with lava-server's own
templates for the job; the job is ``parsec-demo lava job qemu`` of the image's qemuboot.conf,
with the images as ``file://`` URLs and the test definition from this checkout at its commit.
libguestfs runs its appliance under TCG. LAVA's results (its log's ``results`` records) become
the validation's reports in ``<run dir>/report``.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from parsec_demo_processes import log_failure

from ..errors import UserError
from ..paths import cache_root, project_root
from . import check, jobs, results

#: What the dispatcher's root holds (Debian bookworm, like the toolkit's own packages).
DISPATCHER_PACKAGES = (
    "lava-dispatcher", "qemu-system-x86", "qemu-system-arm", "qemu-utils", "git",
    "ca-certificates", "linux-image-cloud-amd64",
)  # fmt: skip
MIRROR = "http://deb.debian.org/debian"
DEVICE = "lava/devices/local-qemu.jinja2"
#: lava-run's environment in the dispatcher's root: libguestfs's appliance without KVM.
ENVIRONMENT = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LIBGUESTFS_BACKEND": "direct",
    "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg",
}

logger = logging.LoggerAdapter(logging.getLogger(__name__), {"tag": "lava"})


class LocalRunError(UserError):
    pass


def dispatcher_root() -> Path:
    """The dispatcher's root file system, made once per package list (a few minutes)."""
    digest = hashlib.sha256(" ".join(DISPATCHER_PACKAGES).encode()).hexdigest()[:12]
    root = cache_root() / "lava-dispatcher" / digest
    if (root / "usr/bin/lava-run").is_file():
        return root
    work = root.with_name(root.name + ".work")
    log = root.with_name(root.name + ".log")
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    logger.info(f"making LAVA's dispatcher root with mmdebstrap (log {log})")
    command = [
        "mmdebstrap", "--mode=root", "--variant=apt", f"--include={','.join(DISPATCHER_PACKAGES)}",
        "--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata", "bookworm", str(work), MIRROR,
    ]  # fmt: skip
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise LocalRunError(log_failure("mmdebstrap of the dispatcher's root failed", log))
    work.rename(root)
    return root


@contextmanager
def mounted(root: Path, paths: list[Path]) -> Iterator[None]:
    """``/dev``, ``/proc``, ``/sys`` and ``paths`` bound at the same places in ``root``; all
    unmounted again however the block ends."""
    done: list[Path] = []
    try:
        for source in [Path("/dev"), Path("/proc"), Path("/sys"), *paths]:
            target = root / str(source).lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run(["mount", "--rbind", str(source), str(target)], check=True)
            subprocess.run(["mount", "--make-rslave", str(target)], check=True)
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-R", "-l", str(target)], check=False)


def results_of_log(log: Path) -> list[dict[str, Any]]:
    """LAVA's test cases from lava-run's log (its ``results`` records), in the shape of LAVA's
    results API: ``suite`` (the definition), ``name`` (the case), ``result``, ``metadata``."""
    cases = []
    for line in log.read_text(errors="replace").splitlines():
        if '"lvl": "results"' not in line:
            continue
        message = yaml.safe_load(line)["msg"]
        cases.append(
            {
                "suite": message.get("definition", "lava"),
                "name": message.get("case", "?"),
                "result": message.get("result", "unknown"),
                "metadata": {k: v for k, v in message.items() if k not in ("case", "result")},
            }
        )
    return cases


#: Where a distribution keeps its own Python: never bound over the dispatcher root's.
SYSTEM_PREFIXES = (Path("/"), Path("/usr"))


def interpreter_binds(root: Path) -> list[Path]:
    """What the dispatcher root needs of this toolkit's interpreter for the RSE model (the
    venv's console script, started by the device's user command inside the root): a Python
    installed apart (pyenv, /opt, /usr/local) is bound in at its path; the distribution's own
    (/usr) is the root's too, which must then have the same version (Debian 12's)."""
    base = Path(sys.base_prefix)
    if base not in SYSTEM_PREFIXES:
        return [base]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not (root / "usr/bin" / version).exists():
        raise LocalRunError(
            f"LAVA's dispatcher root (Debian bookworm) has no /usr/bin/{version}, the "
            "interpreter of this toolkit's venv: make the venv with Python 3.11 to run the "
            "job here"
        )
    return []


def run(image: Path, run_dir: Path, overrides: list[str] | None = None) -> tuple[list[Any], Path]:
    """The dev image in ``image`` through LAVA's dispatcher, the job with the farm settings
    ``overrides`` (``NAME=VALUE``); its results and report dir."""
    qemuboot = next(image.glob("*.qemuboot.conf"), None)
    if qemuboot is None:
        raise LocalRunError(f"{image} has no qemuboot.conf (parsec-demo image build writes one)")
    settings = jobs.FarmSettings.load(
        None,
        [
            f"images_url=file://{image.resolve()}",
            f"testdef_repository={project_root()}",
            *(overrides or []),
        ],
    )
    job = jobs.qemu_job(qemuboot, settings)
    job_file = run_dir / "job.yaml"
    job_file.write_text(jobs.dump(job))
    model = Path(sys.executable).with_name("parsec-demo-rse-model")
    context = {**job.get("context", {}), "parsec_demo_rse_model": str(model)}
    device_file = run_dir / "device.yaml"
    device_file.write_text(check.render_device(project_root() / DEVICE, context))
    root = dispatcher_root()
    log = run_dir / "lava-run.log"
    logger.info(f"lava-run: the job in {job_file}, the device in {device_file} (log {log})")
    started = time.monotonic()
    binds = [project_root(), image.resolve(), run_dir.resolve(), Path(sys.prefix)]
    binds += interpreter_binds(root)
    outermost = [p for p in set(binds) if not any(o != p and o in p.parents for o in binds)]
    with mounted(root, sorted(outermost)), log.open("w") as out:
        command = [
            "chroot", str(root), "env", "-i", *(f"{k}={v}" for k, v in ENVIRONMENT.items()),
            "lava-run", "--job-id", "1", "--output-dir", str(run_dir / "lava-output"),
            "--device", str(device_file), str(job_file),
        ]  # fmt: skip
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
    logger.info(f"lava-run: done in {time.monotonic() - started:.0f} s")
    cases = results_of_log(log)
    if not cases:
        raise LocalRunError(log_failure("lava-run recorded no results", log))
    report = run_dir / "report"
    written = results.write_reports(cases, report, "1", "dev-image")
    return written, report
