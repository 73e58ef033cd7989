"""README's short tour, run as written: its shell block, with bash, against a real server.

The tour is the first thing a newcomer runs after ``./scripts/demo``; each of its commands
must work and say what its comment says (a CLI output format that broke, as YAML on the
client's enums once did, would otherwise show only to that newcomer).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import ROOT, ServerProcess

pytestmark = pytest.mark.integration


def tour() -> str:
    """The ``sh`` block that follows "from the same checkout:" in README.md."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"from the same checkout:\n\n```sh\n(.*?)\n```", readme, re.DOTALL)
    assert found, "README.md has no tour block after 'from the same checkout:'"
    return found.group(1)


@pytest.fixture
def demo_server() -> Iterator[ServerProcess]:
    """What ``./scripts/demo`` starts: the embedded store with the example experiment."""
    server = ServerProcess("--example").start()
    try:
        yield server
    finally:
        server.stop()


def test_the_readme_tour_runs_as_written(demo_server: ServerProcess, tmp_path: Path) -> None:
    script = tour()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "BANDIT_ROUTER_TARGET": demo_server.target,
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    out = done.stdout
    assert "homepage" in out  # get experiments shows the example
    assert out.index("outcome: APPLIED") < out.index("outcome: DUPLICATE")  # step 3
    assert "reason: PINNED" in out and "propensity: 1.0" in out  # step 5, as commented
    assert "trying pins" in out  # the audit shows the pin's reason
