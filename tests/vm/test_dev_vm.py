"""The dev image in a real QEMU machine: the demo inside it, the RSE model beside it on the host.

Marked ``vm``: ``./tools/test -m "not vm"`` leaves these out; CI runs them.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import parsec_demo_machine as steps
import pexpect.fdpexpect
import pytest

from parsec_demo.client_container import LOAD_UNIT, ClientContainer
from parsec_demo.demo.mutual_tls import client_key_problem, describe
from parsec_demo.demo.results import ClientRun
from parsec_demo.demo.vm import (
    MachineClientSide,
    run_client,
    run_in_machine,
    run_mutual_tls_in_machine,
    start_server,
)
from parsec_demo.machine.lifecycle import BootError
from parsec_demo.machine.qemu import QemuMachine
from parsec_demo.machine.ssh_banner import TargetError
from parsec_demo.machine.ssh_target import SSHTarget
from support.handshake_checks import assert_handshake_ok, assert_rse_evidence
from support.suite_machine import suite_machine

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(os.geteuid() != 0, reason="building the dev image needs root"),
]


@pytest.fixture(scope="module")
def image(dev_image: Path) -> Path:
    return dev_image


@pytest.fixture(scope="module")
def machine(dev_machine: QemuMachine) -> QemuMachine:
    """The session's dev VM (tests/vm/conftest.py)."""
    return dev_machine


def events_log(machine: QemuMachine) -> Path:
    """The RSE model's JSON events beside the machine."""
    return Path(machine.rse_files.events_log)


@pytest.fixture(scope="module")
def target(dev_target: SSHTarget) -> SSHTarget:
    """The session's SSH session into it."""
    return dev_target


def test_the_parsec_service_runs_in_the_machine(target: SSHTarget) -> None:
    assert target.run("systemctl is-active parsec-demo") == (0, "active")
    assert target.run("parsec-tool ping") == (0, "1.0")
    status, output = target.run("parsec-tool list-providers")
    assert status == 0 and output.startswith("ID: 0x04 (Trusted Service provider)")
    assert target.run("test -c /dev/virtio-ports/rse")[0] == 0


def test_the_handshake_in_the_client_container_is_served_by_the_rse_outside(
    machine: QemuMachine, target: SSHTarget
) -> None:
    """What ``./tools/demo`` does by default: the client in the container the image loaded
    into podman at boot, the Parsec socket bind-mounted, the server on the host's network."""
    container = ClientContainer.load()
    start_server(target)
    try:
        run = run_client(target, events_log(machine), container=container)
    finally:
        target.run(steps.STOP_SERVER)
    assert run.command == [
        "podman run --rm --network host -v /run/parsec:/run/parsec --user 61000:61000 "
        "--tmpfs /work:rw,mode=0700,U localhost/parsec-demo-client:1 ssl_client1 127.0.0.1"
    ]
    assert_handshake_ok(run, "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256")
    # The host-side RSE model served each signature of the handshake.
    assert_rse_evidence(run, signatures=2)
    assert all(e.client_id == 1 for e in run.calls)
    assert not list(Path(machine.rse_files.store).glob("key-*.json")), "no key left in the RSE"
    assert target.run("parsec-tool list-keys")[0] == 0
    console = machine.rse_console_log.read_text()
    assert "[Crypto] psa_verify_hash: key 0x" in console
    # Loaded at boot by its unit, from the archive in the image; the run left no container.
    assert target.run(f"systemctl is-active {LOAD_UNIT}") == (0, "active")
    assert target.run(f"test -s {container.archive}")[0] == 0
    assert target.run(f"podman ps -aq --filter ancestor={container.reference}") == (0, "")


def test_the_handshake_directly_in_the_machine(machine: QemuMachine, target: SSHTarget) -> None:
    """``./tools/demo --no-container``: ssl_client1 run directly in the machine."""
    start_server(target)
    try:
        run = run_client(target, events_log(machine))
    finally:
        target.run(steps.STOP_SERVER)
    assert run.command == ['cd "$(mktemp -d)" && timeout 120 ssl_client1 127.0.0.1']
    assert_handshake_ok(run, "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256")
    assert_rse_evidence(run, signatures=2)


def test_tls13_in_the_client_container(machine: QemuMachine, target: SSHTarget) -> None:
    """``./tools/demo --tls13``: the container's client speaks TLS 1.3; both signatures it
    checks, the CertificateVerify (RSA-PSS) included, are served by the RSE outside."""
    start_server(target)
    try:
        run = run_client(
            target, events_log(machine), container=ClientContainer.load(),
            options=steps.version_options(tls13=True),
        )  # fmt: skip
    finally:
        target.run(steps.STOP_SERVER)
    assert_handshake_ok(run, "TLS1-3-CHACHA20-POLY1305-SHA256")
    assert "[ Protocol is TLSv1.3 ]" in run.output
    assert_rse_evidence(run, signatures=2)
    assert run.served("psa_verify_hash")[1].alg.startswith("RSA_PSS(")


def test_mutual_tls_in_the_client_container(machine: QemuMachine, target: SSHTarget) -> None:
    """``./tools/demo --mtls --tls13``: the container's client makes its key in the RSE (its
    PSA record in the machine's key directory, bind-mounted), the CA in the machine issues its
    certificate, and the RSE signs its CertificateVerify; nothing is left behind. (TLS 1.2 with
    the same key flow: the validation suite's MutualTlsTest, in the same image.)"""
    result = run_mutual_tls_in_machine(
        target, events_log(machine), ClientContainer.load(), tls13=True
    )
    assert result.ok, describe(result)
    assert client_key_problem(result) is None, describe(result)
    assert (
        result.step("provision")
        .command[0]
        .startswith(
            "podman run --rm --network host -v /run/parsec:/run/parsec --user 61000:61000 "
            f"-v {steps.MACHINE_KEY_DIR}:/work:U "
        )
    )
    handshake = result.step("handshake 1")
    assert "[ Protocol is TLSv1.3 ]" in handshake.output
    status, keys = target.run(as_uid(ClientContainer.load().uid, "parsec-tool list-keys"))
    assert status == 0 and "parsec-se-driver-key" not in keys, keys
    assert target.run(f"test -e {steps.MACHINE_KEY_DIR}")[0] != 0
    assert not list(Path(machine.rse_files.store).glob("key-*.json")), "no key left in the RSE"


def as_uid(uid: int, command: str) -> str:
    """``command`` run in the machine as ``uid`` (no supplementary groups)."""
    return f"setpriv --reuid {uid} --regid {uid} --clear-groups {command}"


def driver_keys(target: SSHTarget, uid: int) -> list[str]:
    """The names of the SE driver's keys that Parsec lists to application ``uid``."""
    status, output = target.run(as_uid(uid, "parsec-tool list-keys"))
    assert status == 0, output
    return re.findall(r"^\* (parsec-se-driver-key\d+) ", output, re.M)


def test_each_client_container_is_a_parsec_application_of_its_own(
    machine: QemuMachine, target: SSHTarget
) -> None:
    """Two client containers of two uids each make a key in the RSE: neither sees the other's.
    The second, handed the first one's PSA record (its key's slot, hence its Parsec name) and
    certificate, can neither sign with that key in a handshake nor destroy it; the first still
    can."""
    container = ClientContainer.load()
    neighbour = container.uid + 1
    events = events_log(machine)
    own_dir, stolen_dir = "/tmp/parsec-demo-neighbour-key", "/tmp/parsec-demo-stolen-key"
    side = MachineClientSide(target, events, container)
    try:
        assert side.as_client(steps.provision_command()).ok
        assert side.as_ca(steps.issue_command(side.pki)).ok
        assert (
            target.run(f"mkdir -p {own_dir} && cp -a {steps.MACHINE_KEY_DIR} {stolen_dir}")[0] == 0
        )
        in_own_dir = container.steps.run(
            steps.provision_command(), workdir_from=own_dir, uid=neighbour
        )
        assert run_in_machine(target, events, in_own_dir).ok
        victims, neighbours = driver_keys(target, container.uid), driver_keys(target, neighbour)
        assert len(victims) == len(neighbours) == 1 and victims != neighbours
        start_server(target, steps.mutual_tls_server(steps.MACHINE_PKI))

        def with_the_stolen_record(argv: list[str]) -> ClientRun:
            command = container.steps.run(argv, workdir_from=stolen_dir, uid=neighbour)
            return run_in_machine(target, events, command)

        signed = with_the_stolen_record(steps.mutual_tls_client(side.ca_file))
        assert not signed.ok and not signed.served("psa_sign_hash"), signed.output
        assert f"holds no key named {victims[0]} for this application" in signed.output
        destroyed = with_the_stolen_record(steps.destroy_command())
        assert not destroyed.ok and not destroyed.served("psa_destroy_key"), destroyed.output
        assert driver_keys(target, container.uid) == victims
        handshake = side.as_client(steps.mutual_tls_client(side.ca_file))
        assert handshake.ok and "Verifying peer X.509 certificate... ok" in handshake.output
        assert [e.status for e in handshake.served("psa_sign_hash")] == ["PSA_SUCCESS"]
    finally:
        side.as_client(steps.destroy_command())
        in_own_dir = container.steps.run(
            steps.destroy_command(), workdir_from=own_dir, uid=neighbour
        )
        target.run(in_own_dir)
        left = f"{steps.MACHINE_PKI} {steps.MACHINE_KEY_DIR} {own_dir} {stolen_dir}"
        target.run(steps.STOP_SERVER)
        target.run(f"rm -rf {left}")
    assert driver_keys(target, container.uid) == driver_keys(target, neighbour) == []
    assert not list(Path(machine.rse_files.store).glob("key-*.json")), "no key left in the RSE"


def test_the_ssh_target_behaves_like_oeqas(target: SSHTarget, tmp_path: Path) -> None:
    """The rules of tests/unit/test_ssh_target.py, against the machine's own sshd."""
    assert target.run("echo out; echo err >&2; exit 3") == (3, "out\nerr")
    assert target.run("echo started; sleep 5", timeout=2) == (255, "started")
    with pytest.raises(AssertionError, match=r"'false' returned non-zero exit status 1:\n$"):
        target.run("false", ignore_status=False)
    local = tmp_path / "to-machine.txt"
    local.write_text("parsec demo\n")
    assert target.copyTo(local, "/tmp/copied.txt") == (0, "")
    assert target.run("cat /tmp/copied.txt") == (0, "parsec demo")
    assert target.copyFrom("/etc/hostname", tmp_path / "hostname") == (0, "")
    assert (tmp_path / "hostname").read_text().strip() == "parsec-demo"
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub/leaf.txt").write_text("leaf\n")
    assert target.run("rm -rf /tmp/tree-copy") == (0, "")
    target.copyDirTo(str(tree), "/tmp/tree-copy")
    assert target.run("cat /tmp/tree-copy/sub/leaf.txt") == (0, "leaf")
    with pytest.raises(AssertionError, match="returned non-zero exit status 1:"):
        target.copyFrom("/nonexistent", tmp_path / "nothing")
    target.run("rm -rf /tmp/tree-copy /tmp/copied.txt")


def test_wrong_host_key_and_wrong_login_are_explained(machine: QemuMachine, tmp_path: Path) -> None:
    assert machine.ssh_port is not None
    port = machine.ssh_port.port
    wrong_host = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJxJfSOg1bV0dDDt3MJrb9kXR5R6v0Sx2w1f7Lr7k5ck"
    with pytest.raises(TargetError, match="not the image's"):
        SSHTarget("127.0.0.1", port, machine.config.ssh_key, wrong_host).connect(timeout=30)
    other_key = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True
    )
    with pytest.raises(TargetError, match=r"authentication as root .* was refused"):
        SSHTarget("127.0.0.1", port, other_key, machine.config.ssh_host_key).connect(timeout=30)


def test_the_console_answers_through_pexpect(machine: QemuMachine) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(machine.console_socket))
    try:
        console = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=30)
        console.send("\r")
        # The serial console logs root in by itself (what oeqa's qemurunner expects there).
        console.expect("root@parsec-demo:~# ")
    finally:
        sock.close()
    assert "parsec-demo login: root (automatic login)" in machine.console_log.read_text()


def test_a_second_machine_runs_beside_and_stops_without_leftovers(
    image: Path, machine: QemuMachine, tmp_path: Path
) -> None:
    run_dir = tmp_path / "second"
    with QemuMachine(suite_machine(image), run_dir) as second, second.target() as other:
        assert machine.ssh_port and second.ssh_port
        assert machine.ssh_port.port != second.ssh_port.port
        assert other.run("hostname") == (0, "parsec-demo")
        assert other.run("parsec-tool ping") == (0, "1.0")
        assert len(_processes_of(run_dir)) >= 2, "QEMU and the RSE model run"
        assert second.rse is not None and second.rse.alive()
    assert _processes_of(run_dir) == [], "stopping leaves no process behind"


def test_a_boot_that_cannot_succeed_fails_with_the_console_tail(
    image: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "broken"
    # The kernel itself gives up at once: no init from the initramfs, no root disk to mount
    # (the initramfs's own "no working init" waits ten seconds before it panics).
    broken = QemuMachine(
        suite_machine(image),
        run_dir,
        extra_cmdline="rdinit=/no-such-init root=/dev/no-such-disk panic=1",
        boot_timeout=90,
    )
    started = time.monotonic()
    with pytest.raises(BootError) as caught:
        broken.start()
    assert time.monotonic() - started < 90
    message = str(caught.value)
    assert "last console lines:" in message and str(run_dir / "console.log") in message
    assert "Unable to mount root fs" in message, "the console tail shows why"
    assert _processes_of(run_dir) == []


def _processes_of(run_dir: Path) -> list[str]:
    result = subprocess.run(["pgrep", "-af", str(run_dir)], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if "pgrep" not in line]
