"""The bootstrap of the tools/ entry points (tools/lib/bootstrap.sh), as another user meets a
checkout that root set up: it never deletes a .venv it did not make, and says in one line what
to do instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from parsec_demo.paths import project_root

USER = 1000  # an unprivileged uid, as the other multi-user tests use
#: The distribution's Python, which every user can run.
SYSTEM_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


@pytest.fixture
def checkout() -> Iterator[Path]:
    """The bootstrap and what its stamp is made of, in a root-owned tree any user can read."""
    top = Path(tempfile.mkdtemp(prefix="bootstrap-"))
    os.chmod(top, 0o755)
    (top / "tools/lib").mkdir(parents=True)
    for name in ("tools/lib/bootstrap.sh", "tools/constraints.txt", "pyproject.toml"):
        shutil.copy(project_root() / name, top / name)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def ensure_venv_as_user(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "source tools/lib/bootstrap.sh && ensure_venv"],
        cwd=checkout,
        user=USER,
        group=USER,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def fake_venv(checkout: Path, python: Path) -> Path:
    """A .venv, root's, whose python is ``python``, holding a file that must survive."""
    venv = checkout / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").symlink_to(python)
    (venv / ".parsec-demo-deps").write_text("an older set of dependencies\n")
    (venv / "kept").write_text("root's\n")
    return venv


def test_a_venv_whose_python_the_user_cannot_run_is_left_alone(checkout: Path) -> None:
    private = checkout / "root-only"
    private.mkdir(mode=0o700)
    (private / "python3").symlink_to(SYSTEM_PYTHON)
    venv = fake_venv(checkout, private / "python3")
    os.chmod(venv, 0o777)  # even where the user could delete it
    result = ensure_venv_as_user(checkout)
    assert result.returncode == 1
    assert result.stderr == (
        f"[parsec-demo] error: {venv} (made by root) has a Python you cannot run: run this as "
        f"root, or move {venv} away and run it again\n"
    )
    assert (venv / "kept").read_text() == "root's\n" and (venv / "bin/python").is_symlink()


def test_a_venv_the_user_cannot_update_is_left_alone(checkout: Path) -> None:
    venv = fake_venv(checkout, Path("/usr/bin/python3"))
    result = ensure_venv_as_user(checkout)
    assert result.returncode == 1
    assert result.stderr == (
        f"[parsec-demo] error: {venv} (made by root) needs its Python dependencies updated and "
        "you cannot write to it: run this as root once\n"
    )
    assert (venv / "kept").read_text() == "root's\n"


#: A small set of pinned dependencies for the wheelhouse's tests (the bootstrap's own mechanism,
#: with two wheels instead of the project's sixty).
SMALL_SET = "pexpect>=4.8,<5\n"
SMALL_PINS = "pexpect==4.9.0\nptyprocess==0.7.0\n"


def install_small_set(
    checkout: Path, cache: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The bootstrap's dependency step in ``checkout``: the small set installed through the
    wheelhouse in ``cache`` (into a new venv the first time; later, into the same one emptied,
    as a new checkout's venv is: one venv is quicker to make than three)."""
    (checkout / "tools/constraints.txt").write_text(SMALL_PINS)
    for name in ("__init__.py", "paths.py", "errors.py"):  # where the user's cache is
        target = checkout / "host/parsec_demo" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(project_root() / "host/parsec_demo" / name, target)
    venv = checkout / ".venv"
    if venv.exists():
        subprocess.run(
            [venv / "bin/python", "-m", "pip", "uninstall", "-q", "-y", "pexpect", "ptyprocess"],
            check=True,
        )
        assert installed(checkout) == ""
    make = "" if venv.exists() else "_make_venv && "
    script = (
        f"source tools/lib/bootstrap.sh && {make}"
        f"printf '{SMALL_SET}' > \"$VENV/requirements.txt\" && _install_dependencies"
    )
    env = {**os.environ, "PARSEC_DEMO_CACHE": str(cache), **(extra_env or {})}
    return subprocess.run(
        ["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True, timeout=300
    )


def installed(checkout: Path) -> str:
    return subprocess.run(
        [checkout / ".venv/bin/python", "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_a_second_checkout_installs_from_the_wheelhouse_without_the_index(
    checkout: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = install_small_set(checkout, cache)
    if first.returncode != 0:
        pytest.skip(f"cannot fill the wheelhouse (no package index?): {first.stderr[-500:]}")
    assert "downloading the wheels into" in first.stderr
    [wheels] = (cache / "wheels").iterdir()
    assert sorted(w.name.split("-")[0] for w in wheels.glob("*.whl")) == ["pexpect", "ptyprocess"]
    assert installed(checkout) == SMALL_PINS
    assert (checkout / ".venv/.parsec-demo-wheels").read_text() == f"{wheels}\n"

    # The next checkout, the package index unreachable: the wheelhouse alone serves it.
    offline = {"PIP_CONFIG_FILE": "/dev/null", "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
               "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""}  # fmt: skip
    again = install_small_set(checkout, cache, offline)
    assert again.returncode == 0, again.stderr
    assert "downloading" not in again.stderr
    assert installed(checkout) == SMALL_PINS

    # A wheelhouse missing a wheel is made again, not half used.
    next(wheels.glob("ptyprocess-*.whl")).unlink()
    mended = install_small_set(checkout, cache)
    assert mended.returncode == 0, mended.stderr
    assert f"the wheelhouse {wheels} lacks wheels: making it again" in mended.stderr
    assert installed(checkout) == SMALL_PINS
    assert [p.name for p in (cache / "wheels").iterdir()] == [wheels.name]
