"""Build hook of the parsec-demo distribution (host toolkit and target package): the Parsec
contracts become Python modules of the target package first (target/build_contracts.py)."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent / "target"))
from build_contracts import generate


class BuildWithContracts(build_py):
    def run(self) -> None:
        generate()
        super().run()


setup(cmdclass={"build_py": BuildWithContracts})
