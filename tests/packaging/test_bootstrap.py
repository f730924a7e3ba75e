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
