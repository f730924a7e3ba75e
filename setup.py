"""Build hook of the parsec-demo distribution (host toolkit and target package): the Parsec
contracts become Python modules of the target package (target/build_contracts.py)."""

import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "target"))
from build_contracts import build_command

setup(cmdclass={"build_py": build_command()})
