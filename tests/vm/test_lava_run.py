"""The dev image's LAVA job run end to end here by LAVA's own dispatcher (`parsec-demo lava
run`: lava-run from Debian's lava-dispatcher in a root of its own, the RSE model started by the
device's user command), its results turned into the validation's reports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from support.suite_machine import SUITE_VCPUS
from support.toolkit_cli import python_command

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

#: The test definition's cases (lava/testdefs/parsec-tls-demo.sh), as the reports name them.
CASES = [
    "parsec-service-active", "parsec-ping", "client-container-loaded", "tls-server-listening",
    "tls-handshake-in-container", "tls13-handshake-in-container",
    "container-without-parsec-socket-fails-closed", "mutual-tls-in-container",
    "no-container-left",
]  # fmt: skip


def test_the_dev_image_job_passes_under_lava_s_own_dispatcher(tmp_path: Path) -> None:
    run_dir = tmp_path / "lava-run"
    result = subprocess.run(
        # The vCPUs of the suite's other machines.
        python_command(
            "lava", "run", "--run-dir", str(run_dir), "--set", f"qemu_cpus={SUITE_VCPUS}"
        ),
        capture_output=True, text=True, timeout=1700,
    )  # fmt: skip
    log = run_dir / "lava-run.log"
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].endswith(" passed, 0 skipped, 0 failed")
    (run,) = json.loads((run_dir / "report/testresults.json").read_text()).values()
    statuses = {name: entry["status"] for name, entry in run["result"].items()}
    for case in CASES:
        assert statuses[f"lava.parsec-tls-demo.{case}"] == "PASSED", case
    assert statuses["lava.lava.job"] == "PASSED"
    # The RSE evidence: the model's console, printed into the job by the device's user
    # command, shows the handshake's signature checks served by the model.
    text = log.read_text()
    assert re.search(rf"qemu-system-x86_64 .*-smp {SUITE_VCPUS} ", text), "the job's qemu_cpus"
    assert "Running user command 'parsec_demo_rse_console'" in text
    assert "[Crypto] psa_verify_hash: key 0x" in text and "-> PSA_SUCCESS" in text
    assert "Job finished correctly" in text
    # The container without the Parsec socket failed closed with the driver's one-line error.
    assert "parsec-se-driver: cannot reach the Parsec service at" in text
