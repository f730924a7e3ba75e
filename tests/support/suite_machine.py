"""How the suite boots the dev image's machines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from parsec_demo.machine.qemu import QemuConfig, load_config

#: The vCPUs of every machine the suite boots, its own and LAVA's. ./tools/test keeps a worker
#: busy on every core, so no machine has a core to spare; under TCG, a guest with more vCPUs
#: than the cores it gets spins in its kernel's locks while their holder waits for a core (the
#: validation on two vCPUs beside one busy core took a third more CPU, and longer, than on
#: one). ``parsec-demo`` itself boots what the image's qemuboot.conf says (QB_SMP).
SUITE_VCPUS = 1


def suite_machine(image: Path) -> QemuConfig:
    """The image's machine as the suite boots it: with ``SUITE_VCPUS``."""
    return replace(load_config(image), smp=SUITE_VCPUS)
