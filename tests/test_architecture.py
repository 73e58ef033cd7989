"""The package layout is the architecture, and import-linter keeps it so.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``): the service's layers
import only downwards, ``policies`` imports no I/O code, the store knows no gRPC, and the
client, the benchmark tools and the simulations reach the service only through its public
contract. Each break below is one a hurried change could make; each must fail the check, so
the contracts cannot silently stop covering what they claim.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bandit_router", "policies", "simulations")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``tree``, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    entry = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    command = [sys.executable, "-c", entry, "--no-cache"]
    command += ["--config", str(tree / "pyproject.toml")]
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


BREAKS = {
    "the store imports gRPC": ("bandit_router/store/keys.py", "import grpc", "The store knows"),
    "the store imports the serving layer": (
        "bandit_router/store/keys.py",
        "import bandit_router.serving.servicers",
        "only downwards",
    ),
    "the Route path imports the Reward path": (
        "bandit_router/route/router.py",
        "import bandit_router.reward.rewards",
        "only downwards",
    ),
    "the Reward path imports analysis (independent siblings)": (
        "bandit_router/reward/sweeper.py",
        "import bandit_router.analysis.reports",
        "only downwards",
    ),
    "the experiment model imports the store": (
        "bandit_router/model/experiments.py",
        "import bandit_router.store.keys",
        "only downwards",
    ),
    "a policy imports redis": ("policies/base.py", "import redis", "no I/O"),
    "the client imports the router": (
        "bandit_router/client/sync.py",
        "import bandit_router.route.router",
        "public contract",
    ),
    "a simulation imports the store": (
        "simulations/live.py",
        "import bandit_router.store.redis_store",
        "public client",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_a_forbidden_import_breaks_its_contract(case: str, tmp_path: Path) -> None:
    module, statement, contract = BREAKS[case]
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    broken = tmp_path / module
    broken.write_text(broken.read_text() + f"\n{statement}  # the break under test\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout[-4000:]
    broken_lines = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken_lines), result.stdout[-4000:]
