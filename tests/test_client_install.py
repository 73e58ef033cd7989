"""The base distribution is the Python client alone, and an editable install is visible to
mypy.

``pip install bandit-router`` must give the client and the generated code (grpcio, protobuf,
grpcio-status) and nothing of the server. Checked for real: the locked base requirements and
the project, built as a wheel, go into a fresh virtual environment (uv, offline from its
cache: everything was downloaded when .venv was made); that environment's Python then uses
the client against a real server and must not find the server's libraries.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import ROOT, ServerThread
from .test_contract import uv_binary

#: Distributions of the server and simulation extras: none may come with the client.
SERVER_DISTRIBUTIONS = {
    "fakeredis",
    "lupa",
    "numpy",
    "scipy",
    "redis",
    "hiredis",
    "pyyaml",
    "prometheus-client",
    "rich",
    "tqdm",
    "matplotlib",
    "argcomplete",
    "grpcio-health-checking",
    "grpcio-reflection",
    "uvloop",
}

CLIENT_SCRIPT = """
import importlib.util, json, sys
from bandit_router.client import BanditClient, NotFound, Outcome, Reason

with BanditClient(sys.argv[1], timeout=5) as client:
    client.create_experiment("slim", ["a", "b"])
    decision = client.route("slim", unit_id="u1")
    outcome = client.reward(decision.decision_id, 1.0)
    try:
        client.route("missing")
    except NotFound as error:
        missing = [error.code().name, error.field]
print(json.dumps({
    "arm": decision.arm,
    "reason_is_enum": isinstance(decision.reason, Reason),
    "outcome": outcome is Outcome.APPLIED,
    "missing": missing,
    "absent": [m for m in ("fakeredis", "numpy", "scipy", "redis", "yaml", "lupa")
               if importlib.util.find_spec(m) is None],
    "client_from": __import__("bandit_router").__file__,
}))
"""


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh environment with exactly the locked base requirements and the built project."""
    uv = uv_binary()
    work = tmp_path_factory.mktemp("base-install")
    source = work / "src"  # a copy: building in the checkout would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in ("bandit_router", "policies", "simulations"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    requirements = work / "requirements.txt"

    def run(*args: str) -> str:
        result = subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=ROOT)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result.stdout

    requirements.write_text(
        run(uv, "export", "-q", "--frozen", "--no-hashes", "--no-emit-project", "--no-dev")
    )
    venv = work / "venv"
    python = str(venv / "bin/python")
    run(uv, "venv", "-q", "--python", sys.executable, str(venv))
    run(uv, "pip", "install", "-q", "--offline", "--python", python, "-r", str(requirements))
    run(uv, "pip", "install", "-q", "--offline", "--no-deps", "--python", python, str(source))
    yield venv


def installed(venv: Path) -> set[str]:
    listing = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {name.lower().replace("_", "-") for name in json.loads(listing.stdout)}


def test_base_distribution_is_the_client_only(base_venv: Path) -> None:
    names = installed(base_venv)
    assert {"bandit-router", "grpcio", "grpcio-status", "protobuf"} <= names
    assert names & SERVER_DISTRIBUTIONS == set()


@pytest.mark.integration
def test_base_client_against_a_real_server(
    base_venv: Path, embedded_server: ServerThread, tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(base_venv / "bin/python"), "-c", CLIENT_SCRIPT, embedded_server.target],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # not the checkout: the installed package, not the source tree
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["arm"] in ("a", "b")
    assert seen["reason_is_enum"] and seen["outcome"]
    assert seen["missing"] == ["NOT_FOUND", "experiment"]
    assert seen["absent"] == ["fakeredis", "numpy", "scipy", "redis", "yaml", "lupa"]
    assert seen["client_from"].startswith(str(base_venv))


def test_the_command_names_the_extra_it_needs(base_venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(base_venv / "bin/bandit-router"), "get", "experiments"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: this command needs the server extra")
    assert "pip install 'bandit-router[server]'" in result.stderr


def test_editable_install_is_visible_to_mypy(tmp_path: Path) -> None:
    """A project outside the checkout type-checks against the editable bandit_router: mypy
    finds the package (setuptools' default editable finder hides it) and its types, so the
    one deliberate mistake below is the only error."""
    (tmp_path / "use_client.py").write_text(
        "from bandit_router.client import BanditClient, Outcome, Reason\n"
        "\n"
        "\n"
        "def serve(target: str) -> Outcome:\n"
        "    with BanditClient(target) as client:\n"
        "        decision = client.route('homepage', unit_id='u1')\n"
        "        reason: Reason = decision.reason\n"
        "        wrong: int = decision.arm\n"
        "        print(reason, wrong)\n"
        "        return client.reward(decision.decision_id, 1.0)\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            sys.executable,
            "use_client.py",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.stdout.splitlines() == [
        'use_client.py:8: error: Incompatible types in assignment (expression has type "str", '
        'variable has type "int")  [assignment]',
        "Found 1 error in 1 file (checked 1 source file)",
    ], result.stdout + result.stderr
