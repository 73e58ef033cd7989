"""``python -m simulations simulate|replay ...``: the same subcommands as ``bandit-router``."""

import sys

from simulations.cli import main

sys.exit(main())
