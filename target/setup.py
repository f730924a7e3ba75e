"""Build hook of the target package: the Parsec contracts become Python modules of the package
(see build_contracts.py). Everything else is in pyproject.toml."""

import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_contracts import build_command

setup(cmdclass={"build_py": build_command()})
