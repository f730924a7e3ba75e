"""The Debian packages each job needs, in one place, and installing the missing ones.

Every sub-command asks for the packages of what it is about to do (:func:`ensure`) before it
does it: as root the missing ones are named, then installed (``apt-get update`` at most once per
run); as anyone else, or with ``PARSEC_DEMO_NO_INSTALL=1``, the command stops with one line
naming them and the ``apt-get install`` that would add them. ``parsec-demo setup JOB`` does the
same ahead of time; ``./tools/test`` uses it for the test suite's packages, with
``start_services=False``: a package's service (openssh-server's sshd, say) is neither started by
its installation (``policy-rc.d``, Debian's switch for that, for the length of the install) nor
left enabled, so the machine runs after the suite what it ran before; the suite starts what it
needs privately. The only packages named elsewhere are ``python3`` and ``python3-venv``, which
``tools/lib/bootstrap.sh`` needs before any Python of the project can run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

logger = logging.getLogger(__name__)

#: Building Mbed TLS 3.6 and the Parsec SE driver, and fetching Debian's Mbed TLS source.
BUILD = (
    "cmake", "gcc", "libc6-dev", "make", "patch", "bzip2", "pkg-config", "libprotobuf-c-dev",
    "protobuf-c-compiler", "apt", "ca-certificates",
)  # fmt: skip
#: The host-mode demo: a private network namespace for ssl_server's port.
HOST_DEMO = ("iproute2", "util-linux")
#: Building the dev image (the Mbed TLS source is fetched and patched on the host). mmdebstrap's
#: eatmydata hooks, which every root the project makes uses, call dpkg-architecture (dpkg-dev).
IMAGE = (
    "mmdebstrap", "dpkg-dev", "e2fsprogs", "openssh-client", "zstd", "apt", "ca-certificates",
    "patch", "bzip2",
)  # fmt: skip
#: Building an image of another architecture: user-mode emulation through binfmt_misc.
FOREIGN_ARCH = ("qemu-user-static", "binfmt-support", "arch-test")
#: The system emulator of each dev image architecture.
EMULATOR = {"amd64": "qemu-system-x86", "arm64": "qemu-system-arm"}
#: The package of each QEMU a qemuboot.conf or manifest may name.
QEMU_BINARIES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-i386": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-arm": "qemu-system-arm",
}
#: LAVA job and test definitions and device dictionaries checked with LAVA's own schema and
#: templates (Debian's; not on PyPI), by Debian's interpreter; lavacli submits jobs to a LAVA
#: server and fetches their results.
LAVA = ("lava-common", "python3", "python3-jinja2", "lavacli")
#: The test suite's own: gdb counts local verifications, chromium renders the report, sshd is
#: the throwaway server the SSH target's contract is checked against.
TEST = ("gdb", "chromium", "openssh-server")


def host_arch() -> str:
    from ..image_build import host_arch as dpkg_arch

    return dpkg_arch()


def image(arch: str) -> tuple[str, ...]:
    """Building the dev image of ``arch`` on this machine."""
    return IMAGE + (FOREIGN_ARCH if arch != host_arch() else ())


def emulator(arch: str) -> tuple[str, ...]:
    """Booting a dev image of ``arch``."""
    return (EMULATOR[arch],) if arch in EMULATOR else ()


def for_qemu(binary: str) -> tuple[str, ...]:
    """Running the QEMU binary a machine configuration names (unknown ones: nothing)."""
    package = QEMU_BINARIES.get(binary)
    return (package,) if package else ()


def dev_machine(arch: str) -> tuple[str, ...]:
    """Building the dev image if needed and booting it."""
    return image(arch) + emulator(arch)


#: What ``parsec-demo setup JOB`` installs.
JOBS: dict[str, Callable[[str], tuple[str, ...]]] = {
    "build": lambda arch: BUILD,
    "host-demo": lambda arch: BUILD + HOST_DEMO,
    "image": image,
    "machine": dev_machine,
    "lava": lambda arch: LAVA,
    "test": lambda arch: BUILD + HOST_DEMO + dev_machine(arch) + LAVA + TEST,
}


class MissingPackagesError(UserError):
    pass


def missing(packages: Iterable[str]) -> list[str]:
    """Those of ``packages`` that are not installed."""
    wanted = sorted(set(packages))
    if not wanted:
        return []
    listing = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}\t${Status}\n", *wanted],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    installed = {
        name
        for name, _, status in (line.partition("\t") for line in listing.splitlines())
        if status.endswith(" installed")
    }
    return [p for p in wanted if p not in installed]


_apt_updated = False


def _apt_get(*arguments: str) -> None:
    command = ["apt-get", "-q", *arguments]
    logger.debug("$ %s", " ".join(command))
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise MissingPackagesError(
            f"apt-get {arguments[0]} failed (exit {result.returncode}):\n" + "\n".join(output[-15:])
        )


#: Debian's switch that keeps maintainer scripts from starting services (exit 101: not now).
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
POLICY = "#!/bin/sh\n# parsec-demo: no service starts while it installs packages\nexit 101\n"
#: Where a package's systemd units are.
UNIT_DIRS = ("/lib/systemd/system/", "/usr/lib/systemd/system/")


@contextmanager
def services_held() -> Iterator[None]:
    """No maintainer script starts a service meanwhile: a ``policy-rc.d`` of ours, unless the
    machine has one of its own (then it decides, and is left alone)."""
    try:
        fd = os.open(POLICY_RC_D, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    except FileExistsError:
        yield
        return
    with os.fdopen(fd, "w") as policy:
        policy.write(POLICY)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def units_of(package: str) -> list[str]:
    """The systemd units (services, sockets, timers) ``package`` installed."""
    listing = subprocess.run(
        ["dpkg-query", "-L", package], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return sorted(
        {
            Path(path).name
            for path in listing
            if path.startswith(UNIT_DIRS) and path.endswith((".service", ".socket", ".timer"))
        }
    )


def disable_units(packages: Iterable[str]) -> None:
    """Leave disabled the units that installing ``packages`` enabled (none was installed, so
    none was enabled before)."""
    for package in packages:
        for unit in units_of(package):
            state = subprocess.run(
                ["systemctl", "is-enabled", unit], capture_output=True, text=True, check=False
            ).stdout.strip()
            if state != "enabled":
                continue
            subprocess.run(
                ["systemctl", "disable", "--quiet", unit], capture_output=True, check=False
            )
            logger.info(f"left {unit} ({package}) disabled, as this machine had it: not at all")


def ensure(packages: Iterable[str], start_services: bool = True) -> None:
    """Install those of ``packages`` that are missing (as root), or say which they are. With
    ``start_services`` false, their services are neither started nor left enabled."""
    global _apt_updated
    wanted = sorted(set(packages))
    if not wanted:
        return
    if shutil.which("dpkg-query") is None:
        logger.debug("not a Debian system: not checking for %s", " ".join(wanted))
        return
    absent = missing(wanted)
    if not absent:
        return
    names = " ".join(absent)
    if os.environ.get("PARSEC_DEMO_NO_INSTALL") == "1":
        raise MissingPackagesError(
            f"needs Debian packages that are not installed: {names} (PARSEC_DEMO_NO_INSTALL=1: "
            f"install them with apt-get install --no-install-recommends {names}, then run again)"
        )
    if os.geteuid() != 0:
        raise MissingPackagesError(
            f"needs Debian packages that are not installed: {names} "
            f"(run as root, or: apt-get install {names})"
        )
    logger.info(
        f"installing Debian packages: {names} (PARSEC_DEMO_NO_INSTALL=1 lists them and stops)"
    )
    if not _apt_updated:
        _apt_get("update")
        _apt_updated = True
    if start_services:
        _apt_get("install", "-y", "--no-install-recommends", *absent)
    else:
        with services_held():
            _apt_get("install", "-y", "--no-install-recommends", *absent)
        if shutil.which("systemctl") is not None:
            disable_units(absent)
    still = missing(absent)
    if still:
        raise MissingPackagesError(f"apt-get did not install {' '.join(still)}")
