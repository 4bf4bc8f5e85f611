"""``python -m deqir_edu``: the ``deqir-edu`` command line (``apps/cli.py``)."""

import sys

from .apps.cli import main

sys.exit(main())
