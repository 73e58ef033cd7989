"""``python -m bandit_router`` is the ``bandit-router`` command."""

import sys

from bandit_router.cli import main

sys.exit(main())
