"""The documented platforms as a user meets them: a plain Debian root (mmdebstrap's minbase with
git, ca-certificates and python3, nothing else), a clone of this checkout in it, and
``./tools/demo --host`` run there with that root's own python3 — Debian 12 (bookworm, Python
3.11.2) and Debian 13 (trixie). Whatever else the demo needs, it must install itself: this is
the guard against install steps that only the developers' machines have.

Each root is made once per suite and package list and kept as mmdebstrap writes it (a tarball)
in the user's cache, outside the checkout (``debian-roots`` of ``paths.cache_root``, by default
``~/.cache/parsec-demo``), remade when a month old; every test unpacks a fresh copy. Only download
caches (apt's archives, pip's, the bootstrap's wheelhouse) are shared between runs. dpkg in the
root writes without fsync (``force-unsafe-io``), as in Debian's official container images: the
packages installed are the same, a throwaway root just does not wait for its disk. The root
reaches the package registries as this machine does: its proxy variables, and the certificates
pip trusts here (an intercepting proxy's among them, where there is one), go in with the clone,
as a user's machine behind such a proxy has them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parsec_demo.paths import PROJECT_ROOT, cache_root

#: Debian releases the README names, and the Python each ships.
SUITES = {"bookworm": "3.11.2", "trixie": "3.13"}
#: What a plain root has besides minbase: what it takes to clone and run the README's command.
PACKAGES = ("git", "ca-certificates", "python3")
#: Roots older than this are made again (their package lists and security updates move on).
MAX_AGE = 30 * 24 * 3600
#: What the demo prints when the RSE served the handshake's verifications and all stopped.
VERDICT = (
    re.compile(r"^RSE served: psa_import_key x\d+, psa_verify_hash x\d+ \(PSA_SUCCESS\)", re.M),
    re.compile(r"^Keys left behind in the RSE by the handshake: 0$", re.M),
    re.compile(r"^Everything stopped; logs in /root/parsec-demo/runs/demo-host-", re.M),
    re.compile(r"^\[build\] Building Mbed TLS's programs and the Parsec SE driver ", re.M),
    re.compile(
        r"^PASSED: the TLS 1.2 handshake on this machine; the RSE verified 2 signatures and "
        r"kept no key$",
        re.M,
    ),
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0, reason="making and entering a Debian root needs root"),
]


def cache_dir() -> Path:
    return cache_root() / "debian-roots"


def plain_root(suite: str) -> Path:
    """The tarball of a plain root of ``suite``, made with mmdebstrap if not cached."""
    tarball = cache_dir() / f"{suite}-minbase-{'-'.join(PACKAGES)}.tar"
    if tarball.exists() and time.time() - tarball.stat().st_mtime < MAX_AGE:
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    result = subprocess.run(
        ["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
         "--hook-dir=/usr/share/mmdebstrap/hooks/eatmydata", suite, str(partial)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, f"mmdebstrap {suite} failed:\n{result.stderr[-3000:]}"
    partial.rename(tarball)
    return tarball


def trusted_bundle() -> Path | None:
    """The certificate bundle pip trusts on this machine: the one its configuration names, else
    the one it uses by default (Debian's pip: the system's)."""
    named = os.environ.get("PIP_CERT")
    if not named:
        listing = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
        ).stdout
        found = re.search(r"^[\w:.]*\.cert='([^']+)'$", listing, re.M)
        named = found.group(1) if found else None
    if not named:
        default = subprocess.run(
            [sys.executable, "-c", "from pip._vendor import certifi; print(certifi.where())"],
            capture_output=True,
            text=True,
        )
        named = default.stdout.strip() or None
    return Path(named) if named and Path(named).is_file() else None


def clone_checkout(destination: Path) -> None:
    """A clone of this checkout with the uncommitted changes to its tracked files."""
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(destination)], check=True)
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout
    if diff:
        subprocess.run(["git", "apply", "--index"], cwd=destination, input=diff, check=True)


#: Mounts the root needs (itself first, so that its / is a mount point, as a container's is),
#: and the shared download caches (the wheelhouse holds what pip's own cache would: a wheel
#: pip built in a root, it keeps there too), then the command as root in it with the root's own
#: environment (nothing of this machine's Python on PATH).
ENTER = r"""
set -e
root=$1; shift
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t sysfs sys "$root/sys"
mount -t tmpfs tmp "$root/tmp"
mount --bind "$APT_CACHE" "$root/var/cache/apt/archives"
mkdir -p "$root/root/.cache/pip" "$root/root/.cache/parsec-demo/wheels"
mount --bind "$PIP_CACHE" "$root/root/.cache/pip"
mount --bind "$WHEELS" "$root/root/.cache/parsec-demo/wheels"
exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin $PASSED "$@"
"""


def run_in_root(root: Path, suite: str, command: str) -> subprocess.CompletedProcess[str]:
    caches = cache_dir() / f"{suite}-downloads"
    (caches / "apt").mkdir(parents=True, exist_ok=True)
    (caches / "pip").mkdir(parents=True, exist_ok=True)
    (caches / "wheels").mkdir(parents=True, exist_ok=True)
    passed = [
        f"{name}={os.environ[name]}"
        for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY")
        if name in os.environ
    ]
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "APT_CACHE": str(caches / "apt"),
        "PIP_CACHE": str(caches / "pip"),
        "WHEELS": str(caches / "wheels"),
        "PASSED": " ".join(passed),
    }
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--fork",
         "sh", "-c", ENTER, "enter", str(root), "sh", "-c", command],
        env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_the_host_demo_runs_with_the_distribution_s_own_python(suite: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(plain_root(suite))], check=True)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    (root / "etc/dpkg/dpkg.cfg.d/parsec-demo-unsafe-io").write_text("force-unsafe-io\n")
    bundle = trusted_bundle()
    if bundle is not None:
        shutil.copy(bundle, root / "usr/local/share/ca-certificates/parsec-demo-host-trust.crt")
        trusted = run_in_root(root, suite, "update-ca-certificates >/dev/null")
        assert trusted.returncode == 0, trusted.stderr
    clone_checkout(root / "root/parsec-demo")

    print_version = "python3 -c 'import platform; print(platform.python_version())'"
    version = run_in_root(root, suite, print_version)
    assert version.returncode == 0, version.stderr
    python = version.stdout.strip()
    assert python.startswith(SUITES[suite]), python
    assert not (root / "root/parsec-demo/.venv").exists()

    demo = run_in_root(root, suite, "cd /root/parsec-demo && ./tools/demo --host")
    output = demo.stdout + demo.stderr
    log = tmp_path / "demo.log"
    log.write_text(output)
    assert demo.returncode == 0, f"./tools/demo --host in {suite} (log {log}):\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    for verdict in VERDICT:
        assert verdict.search(output), f"{verdict.pattern} (log {log})"
    # ./tools/demo installs what running needs: the linters and profilers are the suite's.
    bin_dir = root / "root/parsec-demo/.venv/bin"
    assert (bin_dir / "parsec-demo").exists()
    for tool in ("ruff", "mypy", "pytest", "py-spy", "oelint-adv", "kas"):
        assert not (bin_dir / tool).exists(), f"./tools/demo installed {tool}"
    venv = (root / "root/parsec-demo/.venv/pyvenv.cfg").read_text()
    assert re.search(rf"^version = {re.escape(python)}$", venv, re.M), "the root's own python3"
    shutil.rmtree(root)  # a built root is large; a failed one stays for its logs
