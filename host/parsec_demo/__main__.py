"""``python -m parsec_demo``: the same command line as ``parsec-demo`` (``./tools/parsec-demo``)."""

import sys

from .cli import main

sys.exit(main())
