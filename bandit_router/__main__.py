"""``python -m bandit_router`` is the ``bandit-router`` command."""

import sys

from .cli import main

sys.exit(main())
