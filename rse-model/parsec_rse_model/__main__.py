"""``python -m parsec_rse_model``: the ``parsec-demo-rse-model`` program."""

import sys

from .command import main

sys.exit(main())
