"""``./tools/demo`` on a QEMU machine: the demo inside the dev image, the RSE model beside it.

The dev image is built if needed (cached by its inputs), booted under QEMU with the RSE model
on the host attached as the machine's virtio-serial port, and reached over SSH. Inside it, the
layer's steps (``parsec_demo_machine``) start ``ssl_server`` in the background and
``ssl_client1`` performs the handshake through the machine's Parsec service: by default in the
image's client container (``podman run`` with the host's network and ``/run/parsec``
bind-mounted), or directly in the machine. The RSE model's JSON events, read on the host, show
what the RSE served for that handshake.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

import parsec_demo_machine as machine
from parsec_demo_evidence import LogWindow, event_calls

from ..client_container import ClientContainer
from ..image_build import build_image
from ..machine.qemu import QemuMachine, load_config
from ..machine.ssh_target import SSHTarget
from ..paths import demo_pki_dir, new_run_dir
from ..services import ServiceError
from . import mutual_tls
from .results import ClientRun, summary, verdict

logger = logging.getLogger(__name__)


def run_ok(target: SSHTarget, command: str, what: str, timeout: int = 120) -> str:
    """``command`` in the machine; a ServiceError saying ``what`` failed, with its output."""
    status, output = target.run(command, timeout=timeout)
    if status != 0:
        raise ServiceError(f"{what} in the machine failed:\n{output}")
    return output


def start_server(target: SSHTarget, argv: Sequence[str] = ("ssl_server",)) -> None:
    """The TLS server in the machine, listening on port 4433 (the layer's step)."""
    run_ok(target, machine.start_server_command(argv), f"starting {argv[0]}", timeout=60)


def wait_for_parsec(target: SSHTarget, timeout: int = 120) -> None:
    """Until the machine's Parsec service serves: its unit (``Type=notify``) stays
    "activating" until the service says READY=1, which may come after SSH answers."""
    unit = machine.PARSEC_UNITS[1]
    _, output = target.run(machine.unit_state_command(unit, timeout), timeout=timeout + 30)
    state = machine.unit_state(output) or "in no state"
    if state != "active":
        raise ServiceError(f"the machine's Parsec service ({unit}) is {state}")


def wait_for_container(target: SSHTarget, container: ClientContainer) -> None:
    """The client container in podman's store: the machine loads it at boot; this waits for
    that unit (and starts it if it has not run)."""
    status, output = target.run(container.steps.loaded_command(), timeout=330)
    if status != 0:
        raise ServiceError(
            f"the client container {container.reference} is not in the machine's podman store "
            f"({machine.CLIENT_CONTAINER_UNIT}): {output or 'podman image exists failed'}"
        )


def client_command(
    address: str, container: ClientContainer | None, options: Sequence[str] = ()
) -> str:
    """The command line that runs ssl_client1 in the machine: in ``container``, or directly
    (in a fresh working directory, where the client keeps its PSA storage)."""
    argv = machine.client_command(address, options)
    if container is not None:
        return container.steps.run(argv)
    return machine.in_fresh_directory(argv)


def run_in_machine(target: SSHTarget, events: Path, command: str) -> ClientRun:
    """``command`` in the machine, with the RSE events of its run read on the host."""
    started = time.monotonic()
    with LogWindow(events) as rse:
        status, output = target.run(command, timeout=120)
    return ClientRun([command], output, status, time.monotonic() - started, event_calls(rse.text))


def run_client(
    target: SSHTarget,
    events: Path,
    address: str = "127.0.0.1",
    container: ClientContainer | None = None,
    options: Sequence[str] = (),
) -> ClientRun:
    """ssl_client1 inside the machine (in ``container`` when given), with the RSE events of
    its run read on the host."""
    if container is not None:
        wait_for_container(target, container)
    return run_in_machine(target, events, client_command(address, container, options))


class MachineClientSide:
    """A ``mutual_tls.ClientSide`` in the machine: the client's programs in its container (or
    directly), the CA's outside it, all in the layer's key directory."""

    def __init__(self, target: SSHTarget, events: Path, container: ClientContainer | None) -> None:
        self.target = target
        self.events = events
        self.container = container
        self.pki = machine.MACHINE_PKI
        self.ca_file = f"{machine.MACHINE_PKI}/ca.pem"
        directories = f"{machine.MACHINE_PKI} {machine.MACHINE_KEY_DIR}"
        run_ok(target, f"rm -rf {directories} && mkdir -p {directories}", "making directories")
        for name in machine.PKI_FILES:
            target.copyTo(demo_pki_dir() / name, f"{machine.MACHINE_PKI}/{name}")
        if container is not None:
            wait_for_container(target, container)
            # The client in its container sees only its directory: the root certificate it
            # checks the server against goes there.
            copy = f"cp {machine.MACHINE_PKI}/ca.pem {machine.MACHINE_KEY_DIR}/ca.pem"
            run_ok(target, copy, "giving the client its CA certificate")
            self.ca_file = f"{container.workdir}/ca.pem"

    def as_client(self, argv: Sequence[str]) -> ClientRun:
        if self.container is None:
            return self.as_ca(argv)
        command = self.container.steps.run(argv, workdir_from=machine.MACHINE_KEY_DIR)
        return run_in_machine(self.target, self.events, command)

    def as_ca(self, argv: Sequence[str]) -> ClientRun:
        command = f"cd {machine.MACHINE_KEY_DIR} && {shlex.join(argv)}"
        return run_in_machine(self.target, self.events, command)


def run_mutual_tls_in_machine(
    target: SSHTarget, events: Path, container: ClientContainer | None, tls13: bool
) -> mutual_tls.MutualTlsRun:
    """``./tools/demo --mtls`` in the machine: ``ssl_server2`` requiring a client certificate,
    the client's key made in the RSE, one handshake, the key destroyed; the machine is left as
    it was (server stopped, test PKI and key directory removed)."""
    side = MachineClientSide(target, events, container)
    try:
        start_server(target, machine.mutual_tls_server(machine.MACHINE_PKI))
        return mutual_tls.run_mutual_tls(side, tls13)
    finally:
        target.run(machine.STOP_SERVER)
        target.run(f"rm -rf {machine.MACHINE_PKI} {machine.MACHINE_KEY_DIR}")


def run_vm_demo(
    arch: str = "amd64", in_container: bool = True, tls13: bool = False, mtls: bool = False
) -> int:
    """``./tools/demo``: the handshake inside the dev VM, and the RSE's part of it; the client
    runs in the image's client container unless ``in_container`` is false. ``tls13`` and
    ``mtls`` as for ``host.run_host_demo``.

    The client's command line, its output and the RSE's part are the result (standard
    output); what the demo is doing meanwhile is logged (the command line shows it on standard
    error)."""
    logger.info("Building the dev image (cached when nothing changed) ...")
    image = build_image(arch)
    run_dir = new_run_dir("demo-vm")
    logger.info(f"Run directory: {run_dir}")
    logger.info(f"Booting {image.name} under QEMU with the RSE model beside it ...")
    started = time.monotonic()
    with QemuMachine(load_config(image), run_dir) as qemu:
        logger.info(
            f"Up in {time.monotonic() - started:.0f} s; SSH on port "
            f"{qemu.ssh_port.port if qemu.ssh_port else '?'}"
        )
        with qemu.target() as target:
            wait_for_parsec(target)
            logger.info(f"Parsec service in the machine: {target.run('parsec-tool ping')[1]}")
            container = ClientContainer.load() if in_container else None
            where = f"in the container {container.reference}" if container else "directly"
            version = "TLS 1.3" if tls13 else "TLS 1.2"
            events = Path(qemu.rse_files.events_log)
            if mtls:
                logger.info(
                    f"ssl_server2 runs in the machine, requiring a client certificate; running "
                    f"the client there {where}, {version}, with a key made in the RSE:"
                )
                result = run_mutual_tls_in_machine(target, events, container, tls13)
                print(mutual_tls.describe(result), flush=True)
                ok, calls = mutual_tls.passed(result), result.calls
            else:
                start_server(target)
                logger.info(
                    f"ssl_server runs in the machine; running ssl_client1 there {where}, {version}:"
                )
                options = machine.version_options(tls13)
                try:
                    run = run_client(target, events, container=container, options=options)
                finally:
                    target.run(machine.STOP_SERVER)
                print(f"$ {run.command[0]}")
                print(run.output)
                print()
                print(summary(run.calls), flush=True)
                ok, calls = run.ok, run.calls
    logger.info(f"Machine stopped; logs (console, QEMU, RSE model) in {run_dir}")
    what = f"the {'mutual ' if mtls else ''}{version} handshake in the machine, {where}"
    print(verdict(ok, what, calls, run_dir), flush=True)
    return 0 if ok else 1
