"""The dev image: a bootable Debian machine with the demo, made from Debian packages.

``mmdebstrap`` builds the root file system into a directory (no loop mounts), with Debian's
cloud kernel and tiny-initramfs (one static init that loads the virtio modules and mounts the
root disk; no udev, no scripts). Its customize hook (``image_files/customize.sh``) builds
``ssl_client1``, ``ssl_server`` and the Parsec SE driver inside the image from the same
patched and configured sources as the host build (``native_build.prepare_tree``, reading the
layer), installs the project's Parsec service with
the layer's systemd unit and configuration, and the SSH key of this build directory. Then the
client container (``client_container``: the layer's definition, the image's own ``ssl_client1``)
goes in as an OCI archive with the unit that loads it into podman at boot. The kernel
and initrd are copied out for direct ``-kernel`` boot, and ``mkfs.ext4 -d`` makes the disk.

Images are cached by a hash of every input: a rebuild happens only when one changes. Progress
shows step by step; a failed step says which and keeps its log.
"""

from __future__ import annotations

import configparser
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import client_container, native_build
from .errors import UserError
from .native_build import BuildError, MbedtlsRecipe, contracts_dir, driver_dir, run_step
from .paths import cache_root, project_root

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
IMAGE_FILES = Path(__file__).resolve().with_name("image_files")
DISK_SIZE = "1G"

#: Progress of the build; the command line shows it as ``[image] ...`` lines.
logger = logging.LoggerAdapter(logging.getLogger(__name__), {"tag": "image"})


def images_root() -> Path:
    """Dev images, each in a directory named by the hash of its inputs (the user's cache)."""
    return cache_root() / "images"


def service_dir() -> Path:
    """The layer's files of the service: systemd unit, config.toml, parsec-tool."""
    return native_build.demo_recipe_dir() / "files/parsec-demo-service"


def target_package() -> Path:
    """What runs on the machine: the target package only (its contracts are generated in
    the image)."""
    return project_root() / "target/parsec_service"


PACKAGES = (
    "systemd-sysv",
    "udev",
    "openssh-server",
    "python3",
    "python3-protobuf",
    "python3-cryptography",
    "libprotobuf-c1",
    "iproute2",
    "procps",
    "podman",
    "dbus",  # podman's OCI runtime reaches systemd over D-Bus for cgroups
    "tiny-initramfs",  # the kernel's initramfs generator (image_files/essential.sh)
)
#: Needed to build the demo programs and the protobuf modules in the image; removed after.
BUILD_ONLY = (
    "cmake",
    "gcc",
    "make",
    "libc6-dev",
    "pkg-config",
    "libprotobuf-c-dev",
    "protobuf-c-compiler",
    "protobuf-compiler",
)


@dataclass(frozen=True)
class Architecture:
    name: str
    kernel_package: str
    qemu: str
    machine: str
    cpu: str
    console: str


ARCHITECTURES = {
    "amd64": Architecture(
        "amd64", "linux-image-cloud-amd64", "qemu-system-x86_64", "pc", "max", "ttyS0"
    ),
    "arm64": Architecture(
        "arm64", "linux-image-cloud-arm64", "qemu-system-aarch64", "virt", "cortex-a57", "ttyAMA0"
    ),
}


@dataclass(frozen=True)
class ImageManifest:
    """What a machine runner needs to boot the image; written next to it as manifest.json."""

    arch: str
    kernel: str
    initrd: str
    rootfs: str
    cmdline: str
    qemu: str
    machine: str
    cpu: str
    console: str
    ssh_key: str
    ssh_host_key: str
    inputs: str
    built: str

    @classmethod
    def load(cls, path: Path) -> ImageManifest:
        """The manifest of the image at ``path`` (its directory or its manifest.json);
        ManifestError, in one line, when there is none or it cannot be read."""
        manifest = path / "manifest.json" if path.is_dir() else path
        try:
            data = json.loads(manifest.read_text())
        except FileNotFoundError:
            raise ManifestError(
                f"no dev image at {path} (a directory with manifest.json, or the manifest)"
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read the image manifest {manifest}: {exc}") from exc
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict):
            raise ManifestError(f"{manifest} is not a dev image manifest (not a JSON object)")
        problems = []
        if fields - set(data):
            problems.append("no " + ", ".join(sorted(fields - set(data))))
        if set(data) - fields:
            problems.append("unknown " + ", ".join(sorted(set(data) - fields)))
        if not problems and not all(isinstance(value, str) for value in data.values()):
            problems.append("values must be strings")
        if problems:
            raise ManifestError(f"{manifest} is not a dev image manifest ({'; '.join(problems)})")
        return cls(**data)

    def resolve(self, directory: Path, name: str) -> Path:
        return directory / str(getattr(self, name))


class ManifestError(UserError):
    pass


def ssh_key() -> Path:
    """The SSH key of this build directory (made once), for root logins into its images."""
    key = cache_root() / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "parsec-demo", "-f", str(key)],
            check=True,
        )
    return key


def inputs_fingerprint(arch: str, recipe: MbedtlsRecipe) -> str:
    digest = hashlib.sha256(json.dumps([arch, SUITE, PACKAGES, BUILD_ONLY, DISK_SIZE]).encode())
    digest.update(native_build.inputs_fingerprint(recipe).encode())
    files = sorted(p for d in (IMAGE_FILES, service_dir()) for p in d.rglob("*") if p.is_file())
    files += sorted(p for p in target_package().rglob("*.py") if not p.name.endswith("_pb2.py"))
    files += sorted(contracts_dir().glob("*.proto"))
    files += client_container.definition_files()
    files += [Path(__file__).resolve(), Path(client_container.__file__).resolve()]
    files += [ssh_key().with_suffix(".pub")]
    for path in files:
        digest.update(native_build.input_name(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def image_dir(arch: str, fingerprint: str) -> Path:
    return images_root() / f"{arch}-{fingerprint[:16]}"


def _run(step: str, command: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
    """One step of the image build (``native_build.run_step``), its progress shown: the image
    takes minutes."""
    logger.info(f"{step} (log {log_dir / f'{step}.log'})")
    started = time.monotonic()
    run_step(f"{step}", command, log_dir, env=env)
    logger.info(f"{step}: done in {time.monotonic() - started:.0f} s")


def build_image(arch: str = "amd64", force: bool = False) -> Path:
    """Build the dev image for ``arch`` unless an identical one exists; returns its directory."""
    if os.geteuid() != 0:
        raise BuildError("building the dev image needs root (mmdebstrap --mode=root)")
    if arch not in ARCHITECTURES:
        raise BuildError(f"unknown architecture {arch}; choose from {', '.join(ARCHITECTURES)}")
    images_root().mkdir(parents=True, exist_ok=True)
    # One build of an architecture at a time, whoever asks (another checkout, another test
    # session): a second caller waits, then finds the image built.
    with open(images_root() / f".{arch}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_image_locked(arch, force)


def _build_image_locked(arch: str, force: bool) -> Path:
    spec = ARCHITECTURES[arch]
    recipe = MbedtlsRecipe.load()
    fingerprint = inputs_fingerprint(arch, recipe)
    output = image_dir(arch, fingerprint)
    if (output / "manifest.json").exists() and not force:
        write_qemuboot(output)  # an image built before there was one, or QEMU moved
        return output
    logger.info(
        f"No {arch} dev image for these inputs yet: building it (the first time, or after a "
        "change to what goes into it; ten to twenty minutes, then it is reused)"
    )
    started = time.monotonic()
    work = images_root() / f".work-{arch}-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    log_dir = work / "logs"
    log_dir.mkdir(parents=True)
    try:
        _build(spec, recipe, work, log_dir)
        manifest = _finish(spec, work, fingerprint, started)
    except BaseException:
        failed = images_root() / f"failed-{arch}-logs"
        if failed.exists():
            shutil.rmtree(failed)
        shutil.copytree(log_dir, failed)
        shutil.rmtree(work, ignore_errors=True)
        logger.error(f"the build failed; its logs are kept in {failed}")
        raise
    if output.exists():
        shutil.rmtree(output)
    for scratch in ("rootfs", "mbedtls"):  # the disk image holds them now
        if (work / scratch).exists():
            shutil.rmtree(work / scratch)
    work.rename(output)
    write_qemuboot(output)
    prune_images(arch, keep=2)
    logger.info(f"image ready in {time.monotonic() - started:.0f} s: {output} ({manifest.rootfs})")
    return output


def prune_images(arch: str, keep: int) -> None:
    """Images are large: keep the ``keep`` newest of an architecture, delete older ones."""
    images = sorted(
        (p for p in images_root().glob(f"{arch}-*") if (p / "manifest.json").exists()),
        key=lambda p: (p / "manifest.json").stat().st_mtime,
        reverse=True,
    )
    for old in images[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def host_arch() -> str:
    """The Debian architecture of this machine."""
    if shutil.which("dpkg") is None:  # not Debian: the kernel's name for it, in Debian's words
        machine = platform.machine()
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def ensure_foreign_arch(arch: str) -> None:
    """A foreign architecture builds under qemu-user through binfmt_misc: make it usable."""
    if arch == host_arch():
        return
    if shutil.which("arch-test") is None:
        raise BuildError(
            f"building an {arch} image on this {host_arch()} machine needs user-mode emulation "
            f"(arch-test is missing): `parsec-demo setup image --arch {arch}` installs it"
        )
    if subprocess.run(["arch-test", arch], capture_output=True).returncode == 0:
        return
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], check=False)
    if shutil.which("update-binfmts") is not None:
        enable = ["update-binfmts", "--enable", f"qemu-{ARCH_QEMU_USER[arch]}"]
        subprocess.run(enable, capture_output=True, check=False)
    if subprocess.run(["arch-test", arch], capture_output=True).returncode != 0:
        raise BuildError(
            f"this machine cannot run {arch} programs (arch-test {arch} fails): install "
            "qemu-user-static and binfmt-support, and mount binfmt_misc"
        )


ARCH_QEMU_USER = {"arm64": "aarch64", "amd64": "x86_64"}


def _build(spec: Architecture, recipe: MbedtlsRecipe, work: Path, log_dir: Path) -> None:
    ensure_foreign_arch(spec.name)
    tarball = native_build.fetch_source(recipe, log_dir)
    logger.info(
        f"preparing Mbed TLS {recipe.version} with the layer's {len(recipe.patches)} patches"
    )
    sources = native_build.prepare_tree(recipe, tarball, work / "mbedtls", log_dir)
    rootfs = work / "rootfs"
    env = dict(os.environ)
    env.update(
        PD_MBEDTLS_SRC=str(sources),
        PD_DRIVER_SRC=str(driver_dir()),
        PD_SERVICE_SRC=str(service_dir()),
        PD_TARGET_PACKAGE=str(target_package()),
        PD_CONTRACTS=str(contracts_dir()),
        PD_SSH_PUBKEY=str(ssh_key().with_suffix(".pub")),
        PD_BUILD_ONLY=" ".join(BUILD_ONLY),
        PD_JOBS=str(os.cpu_count() or 2),
    )
    command = [
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        f"--architectures={spec.name}",
        "--components=main",
        f"--include={','.join((spec.kernel_package, *PACKAGES, *BUILD_ONLY))}",
        "--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata",
        f'--essential-hook=sh {IMAGE_FILES / "essential.sh"} "$1"',
        f'--customize-hook=sh {IMAGE_FILES / "customize.sh"} "$1"',
        SUITE,
        str(rootfs),
        MIRROR,
    ]
    _run("mmdebstrap", command, log_dir, env)
    container = client_container.ClientContainer.load()
    logger.info(f"client container {container.reference}: the image's own {container.programs[0]}")
    archive = client_container.install_into_image(rootfs, spec.name, container)
    logger.info(
        f"client container: {archive.stat().st_size // 1024} KiB OCI archive, loaded at boot"
    )


def _finish(spec: Architecture, work: Path, fingerprint: str, started: float) -> ImageManifest:
    rootfs = work / "rootfs"
    boot = rootfs / "boot"
    kernels = sorted(boot.glob("vmlinuz-*"))
    initrds = sorted(boot.glob("initrd.img-*"))
    if not kernels or not initrds:
        raise BuildError(f"no kernel or initrd in {boot}")
    shutil.copy2(kernels[-1], work / "vmlinuz")
    shutil.copy2(initrds[-1], work / "initrd.img")
    host_key = (rootfs / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    _run("mkfs", ["mkfs.ext4", "-q", "-F", "-L", "parsec-demo", "-d", str(rootfs),
                  str(work / "rootfs.ext4"), DISK_SIZE], work / "logs")  # fmt: skip
    key = ssh_key()
    manifest = ImageManifest(
        arch=spec.name,
        kernel="vmlinuz",
        initrd="initrd.img",
        rootfs="rootfs.ext4",
        cmdline=f"root=/dev/vda rw console={spec.console} quiet",
        qemu=spec.qemu,
        machine=spec.machine,
        cpu=spec.cpu,
        console=spec.console,
        ssh_key=str(key),
        ssh_host_key=" ".join(host_key),
        inputs=fingerprint,
        built=f"{time.monotonic() - started:.0f} s",
    )
    (work / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


# --- the image as Yocto's runqemu sees it ---------------------------------------------------------

#: The image's name in Yocto's terms (IMAGE_BASENAME); its files are named as scarthgap names
#: an image's: ``<IMAGE_BASENAME>-<arch>.rootfs.<fstype>`` and ``....rootfs.qemuboot.conf``.
IMAGE_BASENAME = "parsec-demo-dev-image"
#: The serial console runqemu attaches (SERIAL_CONSOLES: speed;tty), per architecture.
SERIAL_CONSOLE = {"amd64": "115200;ttyS0", "arm64": "115200;ttyAMA0"}


def machine_name(arch: str) -> str:
    """MACHINE of the dev image, in the test data and its qemuboot.conf."""
    return f"parsec-demo-dev-{arch}"


def image_link_name(arch: str) -> str:
    """IMAGE_LINK_NAME of the dev image: its rootfs and qemuboot.conf are named after it."""
    return f"{IMAGE_BASENAME}-{arch}.rootfs"


def qemuboot_path(directory: Path) -> Path:
    manifest = ImageManifest.load(directory)
    return directory / f"{image_link_name(manifest.arch)}.qemuboot.conf"


def qemuboot_rootfs(directory: Path) -> Path:
    """The rootfs under the name runqemu recognises as one (a link to the manifest's)."""
    manifest = ImageManifest.load(directory)
    return directory / f"{image_link_name(manifest.arch)}.ext4"


def native_bindir(qemu: str) -> Path:
    """STAGING_BINDIR_NATIVE for the host's QEMU: where runqemu looks for the emulator first
    (it tries PATH after), and a directory that exists, as runqemu requires."""
    found = shutil.which(qemu)
    return Path(found).parent if found else Path("/usr/bin")


def write_qemuboot(directory: Path) -> Path:
    """The dev image's ``qemuboot.conf`` (written whole), beside its manifest.json.

    It describes the machine run-fvp boots from the manifest, in the QB_* keys runqemu reads
    (scarthgap's ``scripts/runqemu``): the emulator, machine, CPU, memory, the kernel with the
    initrd (QB_OPT_APPEND), the root disk, virtio networking with slirp's SSH forward, the
    serial console. Paths of the image are relative to the file (``deploy_dir_image = .``) as
    Yocto writes them; the native sysroot is where the host's QEMU is. Two keys are the
    toolkit's own, which runqemu ignores: the SSH key that logs in as root, and the image's SSH
    host key, so that run-fvp booting this file can check and log in as it does from the
    manifest.
    """
    manifest = ImageManifest.load(directory)
    arch = manifest.arch
    rootfs = qemuboot_rootfs(directory)
    if not rootfs.is_symlink():
        rootfs.unlink(missing_ok=True)
        rootfs.symlink_to(manifest.rootfs)
    kept = [
        word
        for word in manifest.cmdline.split()
        if not word.startswith("root=") and word not in ("rw", "ro")
    ]
    bindir = native_bindir(manifest.qemu)
    settings = {
        "MACHINE": machine_name(arch),
        "DEPLOY_DIR_IMAGE": ".",
        "IMAGE_NAME": image_link_name(arch),
        "IMAGE_LINK_NAME": image_link_name(arch),
        "STAGING_DIR_NATIVE": str(bindir.parent.parent),
        "STAGING_BINDIR_NATIVE": str(bindir),
        "SERIAL_CONSOLES": SERIAL_CONSOLE[arch],
        "QB_SYSTEM_NAME": manifest.qemu,
        "QB_MACHINE": f"-machine {manifest.machine}",
        "QB_CPU": f"-cpu {manifest.cpu}",
        "QB_SMP": "-smp 2",
        "QB_MEM": "-m 1024",
        "QB_DEFAULT_KERNEL": manifest.kernel,
        "QB_DEFAULT_FSTYPE": "ext4",
        "QB_KERNEL_ROOT": "/dev/vda",
        "QB_KERNEL_CMDLINE_APPEND": " ".join(kept),
        "QB_ROOTFS_OPT": "-drive file=@ROOTFS@,if=virtio,format=raw",
        "QB_OPT_APPEND": f"-initrd @DEPLOY_DIR_IMAGE@/{manifest.initrd}",
        "QB_NETWORK_DEVICE": "-device virtio-net-pci,netdev=net0,mac=@MAC@",
        "QB_SLIRP_OPT": "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22",
        "QB_CMDLINE_IP_SLIRP": "ip=dhcp",
        "PARSEC_DEMO_SSH_KEY": manifest.ssh_key,
        "PARSEC_DEMO_SSH_HOST_KEY": manifest.ssh_host_key,
    }
    parser = configparser.ConfigParser(interpolation=None)
    parser["config_bsp"] = settings
    path = qemuboot_path(directory)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with open(partial, "w") as out:
        parser.write(out)
    partial.replace(path)
    logger.debug(f"wrote {path}")
    return path
