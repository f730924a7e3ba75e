"""``./tools/demo`` on a QEMU machine: the demo inside the dev image, the RSE model beside it.

The dev image is built if needed (cached by its inputs), booted under QEMU with the RSE model
on the host attached as the machine's virtio-serial port, and reached over SSH. Inside it,
``ssl_server`` starts in the background and ``ssl_client1`` performs the handshake through the
machine's Parsec service: by default in the image's client container (``client_container``:
``podman run`` with the host's network and ``/run/parsec`` bind-mounted), or directly in the
machine. The RSE model's JSON events, read on the host, show what the RSE served for that
handshake.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from . import mutual_tls
from .client_container import LOAD_UNIT, ClientContainer
from .image_build import build_image
from .machine.qemu import QemuMachine, load_config
from .machine.ssh_target import SSHTarget
from .paths import new_run_dir
from .services import ServiceError
from .tls_demo import ClientRun, read_events, start_tls_server, summary, verdict

SERVER_LOG = "/tmp/ssl_server.log"


class MachineServer:
    """A ``tls_demo.ServerHost`` in the machine behind ``target``: the server runs in the
    background with its output in ``log`` there, so it never holds the SSH session. One
    server of a name at a time: launching one stops any other of that name first."""

    def __init__(self, target: SSHTarget, log: str = SERVER_LOG) -> None:
        self.target = target
        self.log = f"{log} (in the machine)"
        self._log = shlex.quote(log)
        self._name = ""

    def launch(self, argv: Sequence[str]) -> None:
        self._name = shlex.quote(Path(argv[0]).name)
        self.stop()
        command = f"nohup {shlex.join(argv)} > {self._log} 2>&1 < /dev/null &"
        status, output = self.target.run(command)
        if status != 0:
            raise ServiceError(f"cannot start {argv[0]} in the machine: {output}")

    def poll(self) -> tuple[str, bool]:
        status, output = self.target.run(
            f"cat {self._log} 2>/dev/null; pgrep -x {self._name} > /dev/null"
        )
        return output, status == 0

    def stop(self) -> None:
        self.target.run(f"pkill -x {self._name}; true")


def start_server(target: SSHTarget, timeout: float = 30.0) -> None:
    """ssl_server in the machine, listening on port 4433 (``tls_demo.start_tls_server``)."""
    start_tls_server(MachineServer(target), ["ssl_server"], timeout, interval=0.2)


#: The Parsec service's unit in the dev image (the layer's parsec-demo.service).
PARSEC_UNIT = "parsec-demo.service"


def wait_for_parsec(target: SSHTarget, timeout: float = 120.0) -> None:
    """Until the machine's Parsec service serves: its unit (``Type=notify``) stays
    "activating" until the service says READY=1, which may come after SSH answers."""
    command = (
        f"for i in $(seq {int(2 * timeout)}); do s=$(systemctl is-active {PARSEC_UNIT}); "
        '[ "$s" = activating ] || break; sleep 0.5; done; echo "$s"'
    )
    _, output = target.run(command, timeout=timeout + 30)
    state = output.strip().splitlines()[-1] if output.strip() else "in no state"
    if state != "active":
        raise ServiceError(f"the machine's Parsec service ({PARSEC_UNIT}) is {state}")


def client_command(
    address: str, container: ClientContainer | None, options: Sequence[str] = ()
) -> str:
    """The command line that runs ssl_client1 in the machine: in ``container``, or directly
    (in a fresh working directory, where the client keeps its PSA storage)."""
    argv = ["ssl_client1", address, *options]
    if container is not None:
        return container.run_command(argv)
    return f'cd "$(mktemp -d)" && {shlex.join(argv)}'


def wait_for_container(target: SSHTarget, container: ClientContainer) -> None:
    """The client container in podman's store: the machine loads it at boot; this waits for
    that unit (and starts it if it has not run)."""
    status, output = target.run(f"systemctl start {LOAD_UNIT}", timeout=300)
    if status == 0:
        status, output = target.run(f"podman image exists {container.reference}")
    if status != 0:
        raise ServiceError(
            f"the client container {container.reference} is not in the machine's podman store "
            f"({LOAD_UNIT}): {output or 'podman image exists failed'}"
        )


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


def run_in_machine(target: SSHTarget, events: Path, command: str) -> ClientRun:
    """``command`` in the machine, with the RSE events of its run read on the host."""
    _, offset = read_events(events)
    started = time.monotonic()
    status, output = target.run(command, timeout=120)
    calls, _ = read_events(events, offset)
    return ClientRun([command], output, status, time.monotonic() - started, calls)


#: Where the mutual-TLS demo puts the test PKI and the client's key directory in the machine.
MACHINE_PKI = "/tmp/parsec-demo-pki"
MACHINE_KEY_DIR = "/tmp/parsec-demo-client-key"


class MachineClientSide:
    """A ``mutual_tls.ClientSide`` in the machine: the client's programs in its container (or
    directly), the CA's outside it, all in ``MACHINE_KEY_DIR``."""

    def __init__(self, target: SSHTarget, events: Path, container: ClientContainer | None) -> None:
        self.target = target
        self.events = events
        self.container = container
        self.pki = MACHINE_PKI
        self.ca_file = f"{MACHINE_PKI}/ca.pem"
        status, output = target.run(
            f"rm -rf {MACHINE_PKI} {MACHINE_KEY_DIR} && mkdir -p {MACHINE_PKI} {MACHINE_KEY_DIR}"
        )
        if status != 0:
            raise ServiceError(f"cannot make the client's directories in the machine: {output}")
        for name in mutual_tls.PKI_FILES:
            target.copyTo(mutual_tls.pki_dir() / name, f"{MACHINE_PKI}/{name}")
        if container is not None:
            wait_for_container(target, container)
            # The client in its container sees only its directory: the root certificate it
            # checks the server against goes there.
            status, output = target.run(f"cp {MACHINE_PKI}/ca.pem {MACHINE_KEY_DIR}/ca.pem")
            if status != 0:
                raise ServiceError(f"cannot give the client its CA certificate: {output}")
            self.ca_file = f"{container.workdir}/ca.pem"

    def as_client(self, argv: Sequence[str]) -> ClientRun:
        if self.container is None:
            return self.as_ca(argv)
        command = self.container.run_command(argv, workdir_from=MACHINE_KEY_DIR)
        return run_in_machine(self.target, self.events, command)

    def as_ca(self, argv: Sequence[str]) -> ClientRun:
        command = f"cd {MACHINE_KEY_DIR} && {shlex.join(argv)}"
        return run_in_machine(self.target, self.events, command)


def run_mutual_tls_in_machine(
    target: SSHTarget, events: Path, container: ClientContainer | None, tls13: bool
) -> mutual_tls.MutualTlsRun:
    """``./tools/demo --mtls`` in the machine: ``ssl_server2`` requiring a client certificate,
    the client's key made in the RSE, one handshake, the key destroyed; the machine is left as
    it was (server stopped, test PKI and key directory removed)."""
    side = MachineClientSide(target, events, container)
    try:
        server = mutual_tls.server_argv(MACHINE_PKI)
        start_tls_server(MachineServer(target), server, 30.0, interval=0.2)
        return mutual_tls.run_mutual_tls(side, tls13)
    finally:
        target.run(f"pkill -x ssl_server2; rm -rf {MACHINE_PKI} {MACHINE_KEY_DIR}; true")


def run_vm_demo(
    arch: str = "amd64", in_container: bool = True, tls13: bool = False, mtls: bool = False
) -> int:
    """``./tools/demo``: the handshake inside the dev VM, and the RSE's part of it; the client
    runs in the image's client container unless ``in_container`` is false. ``tls13`` and
    ``mtls`` as for ``tls_demo.run_host_demo``.

    The client's command line, its output and the RSE's part are the result (standard
    output); what the demo is doing meanwhile is logged (the command line shows it on standard
    error)."""
    import logging

    progress = logging.getLogger(__name__)
    progress.info("Building the dev image (cached when nothing changed) ...")
    image = build_image(arch)
    run_dir = new_run_dir("demo-vm")
    progress.info(f"Run directory: {run_dir}")
    progress.info(f"Booting {image.name} under QEMU with the RSE model beside it ...")
    started = time.monotonic()
    with QemuMachine(load_config(image), run_dir) as machine:
        progress.info(
            f"Up in {time.monotonic() - started:.0f} s; SSH on port "
            f"{machine.ssh_port.port if machine.ssh_port else '?'}"
        )
        with machine.target() as target:
            wait_for_parsec(target)
            progress.info(f"Parsec service in the machine: {target.run('parsec-tool ping')[1]}")
            container = ClientContainer.load() if in_container else None
            where = f"in the container {container.reference}" if container else "directly"
            version = "TLS 1.3" if tls13 else "TLS 1.2"
            events = run_dir / "rse-events.jsonl"
            if mtls:
                progress.info(
                    f"ssl_server2 runs in the machine, requiring a client certificate; running "
                    f"the client there {where}, {version}, with a key made in the RSE:"
                )
                result = run_mutual_tls_in_machine(target, events, container, tls13)
                print(mutual_tls.describe(result), flush=True)
                ok = mutual_tls.passed(result)
                calls = [e for _, step in result.steps for e in step.events]
            else:
                start_server(target)
                progress.info(
                    f"ssl_server runs in the machine; running ssl_client1 there {where}, {version}:"
                )
                options = mutual_tls.version_options(tls13)
                try:
                    run = run_client(target, events, container=container, options=options)
                finally:
                    target.run("pkill -x ssl_server; true")
                print(f"$ {run.command[0]}")
                print(run.output)
                print()
                print(summary(run.events), flush=True)
                ok, calls = run.ok, run.events
    progress.info(f"Machine stopped; logs (console, QEMU, RSE model) in {run_dir}")
    what = f"the {'mutual ' if mtls else ''}{version} handshake in the machine, {where}"
    print(verdict(ok, what, calls, run_dir), flush=True)
    return 0 if ok else 1
