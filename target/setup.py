"""Build hook of the target package: the Parsec contracts become Python modules before the
package's files are collected (see build_contracts.py). Everything else is in pyproject.toml."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_contracts import generate


class BuildWithContracts(build_py):
    def run(self) -> None:
        generate()
        super().run()


setup(cmdclass={"build_py": BuildWithContracts})
