"""The test suite changes nothing on the machine it did not make: its packages' services (the
system sshd of openssh-server, say) are neither left running nor enabled. ``./tools/test``
records what runs and what is enabled before it installs anything; this compares."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from parsec_demo.cli import debian
from parsec_demo.paths import PROJECT_ROOT

RECORD = PROJECT_ROOT / "build/services-before-test.txt"

pytestmark = pytest.mark.skipif(
    not Path("/run/systemd/system").is_dir(),
    reason="not a systemd host: the suite's packages start and enable no service here",
)


def _state() -> tuple[str, set[str]]:
    ssh = (
        subprocess.run(
            ["systemctl", "is-enabled", "ssh.service"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "not-found"
    )
    running = subprocess.run(
        ["systemctl", "list-units", "--type=service", "--state=running", "--plain", "--no-legend"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    return ssh, {line.split()[0] for line in running if line.strip()}


def test_the_suite_leaves_the_services_as_it_found_them() -> None:
    if not RECORD.exists():
        pytest.skip("run through ./tools/test, which records the services before installing")
    lines = [line.split(" ", 1) for line in RECORD.read_text().splitlines() if " " in line]
    ssh_before = next(value for key, value in lines if key == "ssh")
    running_before = {value for key, value in lines if key == "running"}
    ssh_now, running_now = _state()
    assert ssh_now == ssh_before, "the system sshd's unit changed"
    suites = {
        unit
        for package in debian.JOBS["test"](debian.host_arch())
        for unit in debian.units_of(package)
    }
    assert not (running_now - running_before) & suites, "a package of the suite left a service"
