"""``./tools/demo`` on a QEMU machine: the demo inside the dev image, the RSE model beside it.

The dev image is built if needed (cached by its inputs), booted under QEMU with the RSE model
on the host attached as the machine's virtio-serial port, and reached over SSH. Inside it,
``ssl_server`` starts in the background and ``ssl_client1`` performs the handshake through the
machine's Parsec service; the RSE model's JSON events, read on the host, show what the RSE
served for that handshake.
"""

from __future__ import annotations

import time
from pathlib import Path

from .image_build import build_image
from .machine.qemu import QemuMachine, load_config
from .machine.ssh_target import SSHTarget
from .paths import new_run_dir
from .tls_demo import ClientRun, read_events, summary

SERVER_LOG = "/tmp/ssl_server.log"


def start_server(target: SSHTarget, timeout: float = 30.0) -> None:
    """ssl_server in the background (output to a log, so it never holds the SSH session)."""
    target.run("pkill -x ssl_server; true")
    status, output = target.run(f"nohup ssl_server > {SERVER_LOG} 2>&1 < /dev/null &")
    if status != 0:
        raise RuntimeError(f"cannot start ssl_server: {output}")
    deadline = time.monotonic() + timeout
    while "Waiting for a remote connection" not in target.run(f"cat {SERVER_LOG}")[1]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"ssl_server did not start:\n{target.run(f'cat {SERVER_LOG}')[1]}")
        time.sleep(0.2)


def run_client(target: SSHTarget, events: Path, address: str = "127.0.0.1") -> ClientRun:
    """ssl_client1 inside the machine, with the RSE events of its run read on the host."""
    _, offset = read_events(events)
    started = time.monotonic()
    command = f'cd "$(mktemp -d)" && ssl_client1 {address}'
    status, output = target.run(command, timeout=120)
    calls, _ = read_events(events, offset)
    return ClientRun([command], output, status, time.monotonic() - started, calls)


def run_vm_demo(arch: str = "amd64") -> int:
    print("Building the dev image (cached when nothing changed) ...", flush=True)
    image = build_image(arch)
    run_dir = new_run_dir("demo-vm")
    print(f"Run directory: {run_dir}")
    print(f"Booting {image.name} under QEMU with the RSE model beside it ...", flush=True)
    started = time.monotonic()
    with QemuMachine(load_config(image), run_dir) as machine:
        print(
            f"Up in {time.monotonic() - started:.0f} s; SSH on port "
            f"{machine.ssh_port.port if machine.ssh_port else '?'}",
            flush=True,
        )
        with machine.target() as target:
            print("Parsec service in the machine:", target.run("parsec-tool ping")[1])
            start_server(target)
            print("ssl_server runs in the machine; running ssl_client1 there:\n", flush=True)
            run = run_client(target, run_dir / "rse-events.jsonl")
            print(run.output)
            print()
            print(summary(run.events))
            target.run("pkill -x ssl_server; true")
    print(f"\nMachine stopped; logs (console, QEMU, RSE model) in {run_dir}")
    return 0 if run.ok else 1
