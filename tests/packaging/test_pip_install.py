"""``pip install .`` of a clean copy of the repository into a fresh venv gives working console
scripts outside the checkout. The wheels come from the wheelhouse the bootstrap installed the
suite's own venv from (it holds the project's dependencies and its build requirements, pinned
by the constraints file), with no package index."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from parsec_demo.paths import PROJECT_ROOT

#: Where tools/lib/bootstrap.sh records the wheelhouse it installed this venv from.
WHEELHOUSE_RECORD = Path(sys.prefix) / ".parsec-demo-wheels"


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    if not WHEELHOUSE_RECORD.is_file():
        pytest.skip(f"the bootstrap made no wheelhouse for {sys.prefix} (no writable cache?)")
    return Path(WHEELHOUSE_RECORD.read_text().strip())


def _clean_copy(destination: Path) -> Path:
    """The files a clone would have: tracked and not ignored, as they are in the work tree."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    return destination


@pytest.mark.slow
def test_pip_install_gives_console_scripts_that_work_outside_the_checkout(
    tmp_path: Path, wheelhouse: Path
) -> None:
    source = _clean_copy(tmp_path / "clone")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", "--no-index",
         "--find-links", str(wheelhouse), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "HOME": str(elsewhere)}

    def run(*argv: str) -> str:
        result = subprocess.run(
            argv, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{argv}: {result.stderr}"
        return result.stdout

    where = run(
        str(venv / "bin/python"), "-c",
        "import parsec_demo, parsec_service; print(parsec_demo.__file__, parsec_service.__file__)",
    )  # fmt: skip
    assert str(venv) in where and str(PROJECT_ROOT) not in where and str(source) not in where
    top = run("parsec-demo", "--help")
    for command in ("run-fvp", "image", "validate", "bench", "rse", "parsec", "demo"):
        assert command in top, f"parsec-demo --help does not list {command}"
    assert "--fvp-bindir" in run("parsec-demo", "run-fvp", "--help") or "CONFIG" in run(
        "run-fvp", "--help"
    )
    assert "--arch" in run("parsec-demo", "validate", "--help")
    assert "serve" in run("parsec-demo-service", "--help")
    assert "--max-connections" in run("parsec-demo-rse-model", "--help")
    run(str(venv / "bin/python"), "-c", "import parsec_service.contracts")
