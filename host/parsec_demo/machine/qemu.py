"""QEMU machines: the dev image (its manifest.json) or a Yocto image (its qemuboot.conf).

A machine gets a run directory with one log per console and service. Its serial console is a
Unix socket QEMU serves (logged by QEMU itself to ``console.log``, whoever is attached); its
SSH port is forwarded from a free host port allocated race-free; the root disk is used with
``-snapshot`` by default, so the image never changes. The RSE model runs on the host, like
the RSE beside the application cores, and QEMU attaches it as the virtio-serial port ``rse``
(``/dev/virtio-ports/rse`` in the guest), reconnecting if the model restarts.

KVM is not used unless asked for: where it exists here it is a nested device that makes guests
fail or crawl, and TCG with one thread per vCPU is reliable.
"""

from __future__ import annotations

import configparser
import shlex
import socket
import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from parsec_demo_processes import release_socket, socket_path, spawn, stop_group, wait_until
from parsec_demo_rse import RseFiles, qemu_options

from ..errors import UserError
from ..image_build import ImageManifest
from ..services import Service, start_rse_model
from .lifecycle import Machine
from .ports import PortLease, allocate_port

if TYPE_CHECKING:
    from .ssh_target import SSHTarget


class QemuConfigError(UserError):
    pass


@dataclass(frozen=True)
class QemuConfig:
    """Everything needed to make the QEMU command line of a machine."""

    qemu: str
    machine: list[str]
    cpu: list[str]
    memory_mb: int
    smp: int
    kernel: Path
    initrd: Path | None
    rootfs_options: list[str]
    cmdline: str
    serial_device: list[str] = field(default_factory=list)
    network_device: str = "virtio-net-pci"
    virtio_serial: str = "virtio-serial-pci"
    extra: list[str] = field(default_factory=list)
    ssh_key: Path | None = None
    ssh_host_key: str | None = None
    source: str = ""
    #: The image's files the machine boots from, checked before QEMU starts.
    files: tuple[Path, ...] = ()

    @classmethod
    def from_manifest(cls, path: Path) -> QemuConfig:
        directory = path if path.is_dir() else path.parent
        manifest = ImageManifest.load(path)
        rootfs = directory / manifest.rootfs
        return cls(
            qemu=manifest.qemu,
            machine=["-machine", manifest.machine],
            cpu=["-cpu", manifest.cpu],
            memory_mb=1024,
            smp=2,
            kernel=directory / manifest.kernel,
            initrd=directory / manifest.initrd,
            rootfs_options=["-drive", f"file={rootfs},format=raw,if=virtio"],
            files=(directory / manifest.kernel, directory / manifest.initrd, rootfs),
            cmdline=manifest.cmdline,
            ssh_key=Path(manifest.ssh_key),
            ssh_host_key=manifest.ssh_host_key,
            source=str(path),
        )

    def check_files(self) -> None:
        """A QemuConfigError naming the first of the image's files that is not there."""
        for file in self.files:
            if not file.is_file():
                raise QemuConfigError(
                    f"{self.source}: the image's {file.name} is not there ({file}): "
                    "build the image, or give the configuration that is beside its files"
                )

    @classmethod
    def from_qemuboot(cls, path: Path) -> QemuConfig:
        """A Yocto ``qemuboot.conf`` (INI, section ``config_bsp``, QB_* keys), read as runqemu
        reads one it is given: the image's files are in the file's directory, whatever its
        DEPLOY_DIR_IMAGE says (Yocto writes that relative, ``.``, so that images can move).

        The dev image's qemuboot.conf (``image_build.write_qemuboot``) adds the SSH key and the
        image's host key, as its manifest has them."""
        parser = configparser.ConfigParser(interpolation=None)  # keys come lower-cased
        try:
            with open(path, encoding="utf-8") as text:
                parser.read_file(text)
        except FileNotFoundError:
            raise QemuConfigError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            reason = str(exc).splitlines()[0]
            raise QemuConfigError(f"{path}: cannot read it as a qemuboot.conf: {reason}") from exc
        if "config_bsp" not in parser:
            raise QemuConfigError(f"{path}: not a qemuboot.conf (no config_bsp)")
        qb = {key.upper(): value for key, value in parser["config_bsp"].items()}
        try:
            return cls._from_settings(path, qb)
        except ValueError as exc:
            raise QemuConfigError(f"{path}: cannot read it as a qemuboot.conf: {exc}") from exc

    @classmethod
    def _from_settings(cls, path: Path, qb: dict[str, str]) -> QemuConfig:
        deploy = path.absolute().parent

        def sub(text: str) -> str:
            return text.replace("@DEPLOY_DIR_IMAGE@", str(deploy))

        link = qb.get("IMAGE_LINK_NAME") or qb.get("IMAGE_NAME", "")
        fstype = qb.get("QB_DEFAULT_FSTYPE", "ext4")
        rootfs = deploy / f"{link}.{fstype}"
        kernel = deploy / qb.get("QB_DEFAULT_KERNEL", "Image")
        rootfs_opt = qb.get("QB_ROOTFS_OPT", "-drive file=@ROOTFS@,if=virtio,format=raw")
        rootfs_opt = sub(rootfs_opt.replace("@ROOTFS@", str(rootfs)))
        network = qb.get("QB_NETWORK_DEVICE", "-device virtio-net-pci,netdev=net0,mac=@MAC@")
        network_device = shlex.split(network)[-1].split(",")[0]
        root = qb.get("QB_KERNEL_ROOT", "/dev/vda")
        if not {"ro", "rw"} & set(root.split()):
            root += " rw"  # runqemu's default
        cmdline = " ".join(
            part
            for part in (
                f"root={root}",
                qb.get("QB_KERNEL_CMDLINE_APPEND", ""),
                qb.get("QB_CMDLINE_IP_SLIRP", "ip=dhcp"),
            )
            if part
        )
        machine = shlex.split(qb.get("QB_MACHINE", "-machine virt"))
        virtio_serial = (
            "virtio-serial-device" if "virt" in " ".join(machine) else "virtio-serial-pci"
        )
        memory = qb.get("QB_MEM", "-m 512").split()[-1]
        return cls(
            qemu=qb.get("QB_SYSTEM_NAME", "qemu-system-aarch64"),
            machine=machine,
            cpu=shlex.split(qb.get("QB_CPU", "")),
            memory_mb=int(memory.rstrip("M")),
            smp=int(qb.get("QB_SMP", "-smp 2").split()[-1]),
            kernel=kernel,
            initrd=None,
            rootfs_options=shlex.split(rootfs_opt),
            files=(kernel, rootfs),
            cmdline=cmdline,
            serial_device=shlex.split(sub(qb.get("QB_SERIAL_OPT", ""))),
            network_device=network_device,
            virtio_serial=virtio_serial,
            extra=shlex.split(sub(qb.get("QB_OPT_APPEND", ""))),
            ssh_key=Path(qb["PARSEC_DEMO_SSH_KEY"]) if "PARSEC_DEMO_SSH_KEY" in qb else None,
            ssh_host_key=qb.get("PARSEC_DEMO_SSH_HOST_KEY"),
            source=str(path),
        )


def load_config(path: Path) -> QemuConfig:
    if path.name.endswith(".qemuboot.conf") or path.name == "qemuboot.conf":
        return QemuConfig.from_qemuboot(path)
    return QemuConfig.from_manifest(path)


class QemuMachine(Machine):
    """One running machine: QEMU, the RSE model beside it, a forwarded SSH port."""

    emulator = "QEMU"
    kind = "qemu"
    program_hint = "(is QEMU installed?)"

    def __init__(
        self,
        config: QemuConfig,
        run_dir: Path,
        snapshot: bool = True,
        extra_cmdline: str = "",
        with_rse: bool = True,
        accel: str = "tcg",
        boot_timeout: float = 180.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.snapshot = snapshot
        self.extra_cmdline = extra_cmdline
        self.with_rse = with_rse
        self.accel = accel
        self.boot_timeout = boot_timeout
        self.extra_args = extra_args or []
        self.ssh_port: PortLease | None = None
        self.rse: Service | None = None
        self.process: subprocess.Popen[bytes] | None = None
        run_dir.mkdir(parents=True, exist_ok=True)

    # --- paths --------------------------------------------------------------------------------

    @cached_property
    def console_socket(self) -> Path:
        """The login console's socket (QEMU serves it): in the run directory, or where
        ``socket_path`` puts a socket whose path would be too long there."""
        return Path(socket_path(self.run_dir, "console.sock"))

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.run_dir / "qemu.log"

    @property
    def rse_files(self) -> RseFiles:
        """What the RSE model beside the machine keeps in the run directory."""
        return RseFiles(self.run_dir)

    @property
    def rse_console_log(self) -> Path:
        return Path(self.rse_files.console_log)

    def boot_console(self) -> Path:
        return self.console_log

    def emulator_log(self) -> Path:
        return self.qemu_log

    def console_logs(self) -> dict[str, Path]:
        return {"default": self.console_log}

    def rse_logs(self) -> tuple[Path | None, Path | None]:
        if not self.with_rse:
            return None, None
        return self.rse_console_log, Path(self.rse_files.events_log)

    def login_key(self) -> Path | None:
        return self.config.ssh_key

    def open_console(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

        def connected() -> bool:
            return sock.connect_ex(str(self.console_socket)) == 0

        wait_until(connected, timeout=10, interval=0.1)
        return sock

    def logs(self) -> list[Path]:
        return [p for p in (self.console_log, self.qemu_log, self.rse_console_log) if p.exists()]

    # --- command line -------------------------------------------------------------------------

    def command(self, ssh_port: int) -> list[str]:
        c = self.config
        accel = ["-accel", "tcg,thread=multi"] if self.accel == "tcg" else ["-accel", self.accel]
        command = [
            c.qemu, *c.machine, *c.cpu, *accel,
            "-m", str(c.memory_mb), "-smp", str(c.smp),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(c.kernel),
        ]  # fmt: skip
        if c.initrd is not None:
            command += ["-initrd", str(c.initrd)]
        command += ["-append", " ".join(p for p in (c.cmdline, self.extra_cmdline) if p)]
        command += c.rootfs_options
        if self.snapshot:
            command.append("-snapshot")
        command += [
            "-chardev",
            f"socket,id=console0,path={self.console_socket},server=on,wait=off,"
            f"logfile={self.console_log},logappend=on",
            "-serial", "chardev:console0",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
            "-device", f"{c.network_device},netdev=net0",
        ]  # fmt: skip
        command += c.serial_device
        if self.with_rse:
            rse_socket = self.rse.socket_path if self.rse else self.rse_files.socket
            command += qemu_options(str(rse_socket), c.virtio_serial)
        return command + c.extra + self.extra_args

    # --- lifecycle ----------------------------------------------------------------------------

    def _start(self, wait: bool) -> None:
        """The RSE model first (QEMU connects to it), then QEMU."""
        self.config.check_files()
        if self.with_rse:
            self.rse = start_rse_model(self.run_dir)
        self.ssh_port = allocate_port()
        command = self.command(self.ssh_port.port)
        (self.run_dir / "qemu-command.txt").write_text(shlex.join(command) + "\n")
        self.process = spawn(command, self.qemu_log)
        if wait:
            self._wait_for_boot()

    def target(self) -> SSHTarget:
        from .ssh_target import SSHTarget  # paramiko: loaded when a machine is reached

        assert self.ssh_port is not None
        target = SSHTarget(
            "127.0.0.1",
            self.ssh_port.port,
            self.config.ssh_key,
            self.config.ssh_host_key,
            rse_log=self.rse_console_log if self.with_rse else None,
        )
        return target.connect()

    def stop(self) -> None:
        stop_group(self.process, grace=10)
        release_socket(self.console_socket)
        if self.rse is not None:
            self.rse.stop()
        if self.ssh_port is not None:
            self.ssh_port.release()
