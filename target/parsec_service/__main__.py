"""``python3 -m parsec_service``: the same as ``parsec-demo-service``."""

import sys

from .cli import main

sys.exit(main())
