"""The dev VM the VM tests share: built once (cached by its inputs), booted once per session
(with pytest-xdist, ./tools/test gives its modules to one worker: tests/conftest.py).

Tests that only run commands in the machine, and leave it as they found it, use
``dev_machine``; a test that needs a machine of its own (a second one beside it, a boot that
must fail, LAVA's or poky's own boot) boots it itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from parsec_demo.demo.vm import wait_for_parsec
from parsec_demo.image_build import build_image
from parsec_demo.machine.qemu import QemuMachine
from parsec_demo.machine.ssh_target import SSHTarget
from support.suite_machine import suite_machine


@pytest.fixture(scope="session")
def dev_image() -> Path:
    return build_image("amd64")


@pytest.fixture(scope="session")
def dev_machine(dev_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QemuMachine]:
    with QemuMachine(suite_machine(dev_image), tmp_path_factory.mktemp("vm")) as running:
        yield running


@pytest.fixture(scope="session")
def dev_target(dev_machine: QemuMachine) -> Iterator[SSHTarget]:
    """An SSH session into the dev VM, once its Parsec service serves (it is "activating"
    until the service says READY=1)."""
    with dev_machine.target() as connected:
        wait_for_parsec(connected)
        yield connected
