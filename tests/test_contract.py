"""The contract and the code standards: fresh generated code, buf lint, ruff, mypy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_generated_code_is_fresh() -> None:
    result = run(sys.executable, "scripts/gen_proto.py", "--check")
    assert result.returncode == 0, result.stderr


def buf_binary() -> str:
    for candidate in (
        os.environ.get("BUF"),
        str(ROOT / ".tools/node_modules/.bin/buf"),
        shutil.which("buf"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "buf is not installed: run `npm install --prefix .tools @bufbuild/buf` (scripts/test does)"
    )


def test_buf_lint_standard() -> None:
    result = run(buf_binary(), "lint", cwd=ROOT / "proto")
    assert result.returncode == 0, result.stdout + result.stderr


def test_contract_names_of_the_architecture() -> None:
    """Names other teams generate clients from; renaming any breaks them."""
    from bandit_router.v1 import admin_pb2, router_pb2

    route_request = router_pb2.RouteRequest.DESCRIPTOR.fields_by_name
    assert {"experiment", "unit_id", "excluded_arms", "context"} <= set(route_request)
    route_response = router_pb2.RouteResponse.DESCRIPTOR.fields_by_name
    assert {
        "decision_id",
        "arm",
        "propensity",
        "reason",
        "policy",
        "state_version",
        "reward_deadline",
    } <= set(route_response)
    assert {"decision_id", "value"} <= set(router_pb2.RewardRequest.DESCRIPTOR.fields_by_name)
    admin = admin_pb2.DESCRIPTOR.services_by_name["Admin"].methods_by_name
    assert {
        "CreateExperiment",
        "GetExperiment",
        "ListExperiments",
        "UpdateExperiment",
        "DeleteExperiment",
        "AddArm",
        "RemoveArm",
        "SetArmState",
        "PinArm",
        "Unpin",
        "Pause",
        "Resume",
        "Reset",
        "GetReport",
        "ListAudit",
        "ExportDecisions",
    } <= set(admin)


def uv_binary() -> str:
    candidate = ROOT / ".tools/uv/bin/uv"
    if not candidate.exists():
        pytest.fail("uv is not installed in .tools/uv: run scripts/setup-venv (scripts/test does)")
    return str(candidate)


def test_lock_file_matches_pyproject() -> None:
    """What CI installs is uv.lock: a dependency changed in pyproject.toml must be re-locked."""
    result = run(uv_binary(), "lock", "--check")
    assert result.returncode == 0, (
        "uv.lock is out of date with pyproject.toml: run `.tools/uv/bin/uv lock` and commit it\n"
        + result.stderr[-2000:]
    )


def test_ruff_clean() -> None:
    result = run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_clean() -> None:
    checked = ("bandit_router", "policies", "simulations", "tests", "docs/hooks")
    result = run(sys.executable, "-m", "mypy", *checked)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_policies_never_import_the_service() -> None:
    """Pure maths imports no I/O code: the service depends on policies, never the reverse."""
    code = (
        "import sys, policies, policies.registry, policies.report, policies.drift;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'bandit_router', 'simulations', 'redis', 'grpc', 'fakeredis'}];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stdout
