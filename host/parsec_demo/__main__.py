"""``python -m parsec_demo``: the same CLI as ``./tools/parsec-demo``."""

import sys

from .cli import main

sys.exit(main())
