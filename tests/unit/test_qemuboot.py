"""The dev image's qemuboot.conf: what runqemu reads of it, and run-fvp booting it."""

from __future__ import annotations

import configparser
import os
import re
import shlex
from pathlib import Path

from parsec_demo.image_build import (
    IMAGE_BASENAME,
    ImageManifest,
    image_link_name,
    machine_name,
    qemuboot_rootfs,
    write_qemuboot,
)
from parsec_demo.machine import run_fvp as runner
from parsec_demo.machine.qemu import QemuConfig, QemuMachine
from support.dev_image_files import make_image


def runqemu_reads(conf: Path) -> dict[str, str]:
    """The settings as scarthgap's runqemu takes them from a qemuboot.conf it is given: keys
    upper-cased, ``.`` and ``../`` relative to the file, DEPLOY_DIR_IMAGE the file's folder."""
    parser = configparser.ConfigParser()
    parser.read(conf)
    settings = {}
    for key, value in parser.items("config_bsp"):
        if value.startswith("../"):
            value = os.path.abspath(os.path.dirname(conf) + "/" + value)
        elif value == ".":
            value = os.path.dirname(conf)
        settings[key.upper()] = value
    settings["DEPLOY_DIR_IMAGE"] = os.path.realpath(os.path.dirname(conf))
    return settings


def test_runqemu_finds_every_file_of_the_image_from_the_conf(tmp_path: Path) -> None:
    image = make_image(tmp_path / "amd64-0123")
    conf = write_qemuboot(image)
    assert conf.name == f"{IMAGE_BASENAME}-amd64.rootfs.qemuboot.conf"
    qb = runqemu_reads(conf)
    deploy = Path(qb["DEPLOY_DIR_IMAGE"])
    assert qb["MACHINE"] == machine_name("amd64")
    assert qb["IMAGE_LINK_NAME"] == image_link_name("amd64")
    # runqemu takes its rootfs argument for a rootfs by its name, and finds the conf beside it.
    rootfs = qemuboot_rootfs(image)
    assert "-image-" in rootfs.name and ".rootfs." in rootfs.name
    fstype = qb["QB_DEFAULT_FSTYPE"]
    assert rootfs.name == f"{qb['IMAGE_LINK_NAME']}.{fstype}"
    assert re.sub(rf"\.{fstype}$", ".qemuboot.conf", str(rootfs)) == str(conf)
    assert rootfs.resolve() == (image / "rootfs.ext4").resolve()
    assert (deploy / os.path.basename(qb["QB_DEFAULT_KERNEL"])).is_file()
    append = shlex.split(qb["QB_OPT_APPEND"].replace("@DEPLOY_DIR_IMAGE@", str(deploy)))
    assert append[0] == "-initrd" and Path(append[1]).is_file()
    # The native sysroot must exist (runqemu otherwise runs bitbake -e), and holds QEMU if the
    # host has it there.
    assert Path(qb["STAGING_DIR_NATIVE"]).is_dir() and Path(qb["STAGING_BINDIR_NATIVE"]).is_dir()
    assert qb["QB_SYSTEM_NAME"] == "qemu-system-x86_64"
    assert qb["QB_MACHINE"] == "-machine pc" and qb["QB_CPU"] == "-cpu max"
    assert qb["QB_MEM"] == "-m 1024" and qb["QB_SMP"] == "-smp 2"
    # runqemu: root=<QB_KERNEL_ROOT> rw ... <QB_KERNEL_CMDLINE_APPEND>: the manifest's line.
    assert qb["QB_KERNEL_ROOT"] == "/dev/vda"
    assert qb["QB_KERNEL_CMDLINE_APPEND"] == "console=ttyS0 quiet"
    assert qb["SERIAL_CONSOLES"] == "115200;ttyS0"
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in qb["QB_SLIRP_OPT"]
    assert "@MAC@" in qb["QB_NETWORK_DEVICE"] and "@ROOTFS@" in qb["QB_ROOTFS_OPT"]


def test_writing_it_again_keeps_one_rootfs_link(tmp_path: Path) -> None:
    image = make_image(tmp_path / "arm64-0123", "arm64")
    first = write_qemuboot(image).read_text()
    assert write_qemuboot(image).read_text() == first
    assert qemuboot_rootfs(image).is_symlink()
    assert sorted(p.name for p in image.iterdir() if p.name.startswith(IMAGE_BASENAME)) == [
        f"{IMAGE_BASENAME}-arm64.rootfs.ext4",
        f"{IMAGE_BASENAME}-arm64.rootfs.qemuboot.conf",
    ]
    qb = runqemu_reads(write_qemuboot(image))
    assert qb["SERIAL_CONSOLES"] == "115200;ttyAMA0" and qb["QB_MACHINE"] == "-machine virt"


def test_run_fvp_boots_the_conf_as_it_boots_the_manifest(tmp_path: Path) -> None:
    image = make_image(tmp_path / "amd64-0123")
    conf = write_qemuboot(image)
    from_conf = runner.read_config(conf)
    from_manifest = QemuConfig.from_manifest(image)
    assert isinstance(from_conf, QemuConfig)
    for name in ("qemu", "machine", "cpu", "memory_mb", "smp", "ssh_key", "ssh_host_key"):
        assert getattr(from_conf, name) == getattr(from_manifest, name), name
    assert from_conf.kernel.resolve() == from_manifest.kernel.resolve()
    assert from_conf.network_device == "virtio-net-pci"
    assert from_conf.virtio_serial == from_manifest.virtio_serial == "virtio-serial-pci"
    command = QemuMachine(from_conf, tmp_path / "run").command(40404)
    text = shlex.join(command)
    assert f"-initrd {image}/initrd.img" in text
    assert f"file={qemuboot_rootfs(image)},if=virtio,format=raw" in text
    assert "-append 'root=/dev/vda rw console=ttyS0 quiet ip=dhcp'" in text
    assert "virtserialport,bus=vser0.0,chardev=rse,name=rse" in text
    # The manifest's boot, word for word, but for the rootfs's name and slirp's ip=dhcp.
    manifest_command = QemuMachine(from_manifest, tmp_path / "run").command(40404)
    ours, theirs = set(" ".join(command).split()), set(" ".join(manifest_command).split())
    assert ours - theirs == {"ip=dhcp", f"file={qemuboot_rootfs(image)},if=virtio,format=raw"}
    assert theirs - ours == {f"file={image / 'rootfs.ext4'},format=raw,if=virtio"}


def test_the_conf_is_a_manifest_s_sibling_the_manifest_reader_ignores(tmp_path: Path) -> None:
    image = make_image(tmp_path / "amd64-0123")
    write_qemuboot(image)
    assert ImageManifest.load(image).arch == "amd64"  # still one manifest, unchanged


def test_qb_kernel_root_is_read_as_runqemu_reads_it(tmp_path: Path) -> None:
    conf = tmp_path / "core-image-minimal-qemux86-64.qemuboot.conf"
    conf.write_text(
        "[config_bsp]\nimage_link_name = core-image-minimal-qemux86-64\n"
        "qb_system_name = qemu-system-x86_64\nqb_kernel_root = /dev/vda2 ro\n"
        "deploy_dir_image = .\n"
    )
    config = QemuConfig.from_qemuboot(conf)
    assert config.cmdline.startswith("root=/dev/vda2 ro ")
    assert config.kernel.parent == tmp_path  # "." is the conf's folder, not the cwd
    conf.write_text(conf.read_text().replace("qb_kernel_root = /dev/vda2 ro\n", ""))
    assert QemuConfig.from_qemuboot(conf).cmdline.startswith("root=/dev/vda rw ")
