"""``parsec-demo validate --oe-core POKY`` end to end: the dev image booted by poky's runqemu
through the layer's testimage controller, the cases run by poky's oeqa, and every case passing,
the RSE evidence included.

Marked ``vm``; runs when ``PARSEC_DEMO_POKY`` names a poky (scarthgap) checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parsec_demo.image_build import build_image

POKY = os.environ.get("PARSEC_DEMO_POKY")
pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the dev image needs root"),
    pytest.mark.skipif(not POKY, reason="PARSEC_DEMO_POKY names no poky checkout"),
]
RSE_EVIDENCE = "parsec_demo_handshake.TlsHandshakeTest.test_rse_served_the_handshake"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command and str(os.getpid()) != entry.name:
            found.append(command)
    return found


@pytest.mark.timeout(1200)
def test_the_cases_pass_through_poky_s_oeqa_and_the_layer_s_controller(tmp_path: Path) -> None:
    assert POKY is not None
    image = build_image("amd64")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "parsec_demo", "validate", "--oe-core", POKY, "--image", str(image)],
        capture_output=True, text=True, env={**os.environ, "PARSEC_DEMO_RUNS": str(tmp_path)},
        timeout=1100,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-4000:]
    [run_dir] = [p for p in tmp_path.iterdir() if p.name.startswith("validate-")]
    document = json.loads((run_dir / "report/testresults.json").read_text())
    [(result_id, entry)] = document.items()
    assert result_id.startswith("runtime_parsec-demo-dev-image_parsec-demo-dev-amd64_")
    assert entry["configuration"]["IMAGE"] == image.name
    assert entry["configuration"]["TEST_TARGET"] == "ParsecDemoQemuTarget"
    statuses = {name: r["status"] for name, r in entry["result"].items()}
    assert {"ping.PingTest.test_ping", "ssh.SSHTest.test_ssh", RSE_EVIDENCE} <= set(statuses)
    assert {n: s for n, s in statuses.items() if s != "PASSED"} == {}, entry["result"]
    # What testimage leaves: qemurunner's log of the login console, the RSE model's console
    # beside it with the handshake's calls; the machine logged root in there by itself, and
    # qemurunner did not give up on a login (its log has no "Couldn't login"). The shell's
    # prompt may reach the log after qemurunner stopped reading it: not checked.
    [console] = (run_dir / "testimage").glob("qemu_boot_log.*.2")
    assert "login: root (automatic login)" in console.read_text(errors="replace")
    [rse_console] = (run_dir / "testimage").glob("qemu_boot_log.*.rse/rse-console.log")
    assert "psa_verify_hash" in rse_console.read_text()
    assert "Couldn't login" not in (run_dir / "oeqa.log").read_text()
    assert "machine up in" in result.stderr
    # Everything it started has stopped: QEMU, the RSE model, the ssh-agent.
    assert processes_mentioning(str(run_dir)) == []
    print(f"validate --oe-core: {len(statuses)} passed in {elapsed:.0f} s")
