"""A dev image directory as ``parsec-demo image build`` leaves it, for tests that read one
(small stand-in files for the kernel, initrd and disk: nothing boots them)."""

from __future__ import annotations

import json
from pathlib import Path

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMm+HabyeL1vRt303JNxvXpCakUcVbfK0epS+rnxCR6U"


def make_image(directory: Path, arch: str = "amd64") -> Path:
    """An image directory as ``image build`` leaves it (small stand-in files for the big ones)."""
    directory.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img", "rootfs.ext4"):
        (directory / name).write_bytes(b"\0" * 16)
    console = {"amd64": "ttyS0", "arm64": "ttyAMA0"}[arch]
    manifest = {
        "arch": arch,
        "kernel": "vmlinuz",
        "initrd": "initrd.img",
        "rootfs": "rootfs.ext4",
        "cmdline": f"root=/dev/vda rw console={console} quiet",
        "qemu": {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}[arch],
        "machine": {"amd64": "pc", "arm64": "virt"}[arch],
        "cpu": {"amd64": "max", "arm64": "cortex-a57"}[arch],
        "console": console,
        "ssh_key": str(directory / "id_ed25519"),
        "ssh_host_key": HOST_KEY,
        "inputs": "0" * 64,
        "built": "1 s",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory
