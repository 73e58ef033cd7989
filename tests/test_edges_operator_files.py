"""Operator files and start-up errors: adding tokens leaves a valid file, bad files are refused
loudly without showing a secret, and each start-up failure is one line and exit status 2.

Start-up failures run ``bandit-router serve`` as a real process, as an operator would.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest

from bandit_router.cli import main as cli_main
from bandit_router.client import BanditClient
from bandit_router.errors import InvalidArgument
from bandit_router.operations.auth import hash_token, load_tokens, new_token

from .servers import ROOT, RedisServer, ServerProcess, ServerThread, free_port

pytestmark = pytest.mark.integration


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``bandit-router serve ...`` expected to fail at start: its exit status and output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BANDIT_ROUTER_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bandit_router", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        cwd=ROOT,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def create_token(path: Path, principal: str, role: str, capsys: pytest.CaptureFixture[str]) -> str:
    args = ["token", "create", "--principal", principal, "--role", role, "--file", str(path)]
    assert cli_main(args) == 0
    return capsys.readouterr().out.strip()


# -- tokens files --------------------------------------------------------------------------


def readme_token_commands() -> list[list[str]]:
    """The ``bandit-router token create`` commands of the Authentication section of the
    Operating page (docs/operating.md)."""
    text = (ROOT / "docs" / "operating.md").read_text()
    section = text[text.index("## Authentication") :]
    section = section[: section.index("\n## ", 1)]
    return [
        shlex.split(line)[1:]
        for line in section.splitlines()
        if line.startswith("bandit-router token create")
    ]


def test_readme_token_commands_give_a_file_where_every_token_works(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BANDIT_ROUTER_TOKENS", raising=False)
    monkeypatch.chdir(tmp_path)
    commands = readme_token_commands()
    assert len(commands) >= 2
    tokens: list[tuple[str, str]] = []
    for command in commands:
        assert cli_main(command) == 0, command
        tokens.append((command[command.index("--role") + 1], capsys.readouterr().out.strip()))
    path = tmp_path / commands[0][commands[0].index("--file") + 1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    for _, token in tokens:
        assert token.startswith("brt_") and token not in text
    assert len(load_tokens(str(path), None)) == len(commands)
    server = ServerThread(tokens_file=str(path), refresh_interval=0.05).start()
    try:
        operator = next(token for role, token in tokens if role == "operator")
        with BanditClient(server.target, token=operator, timeout=5) as client:
            client.create_experiment("shop", ["a", "b"])
        for role, token in tokens:
            with BanditClient(server.target, token=token, timeout=5, max_attempts=1) as client:
                if role == "operator":
                    client.list_experiments()
                assert client.route("shop").arm in ("a", "b")
    finally:
        server.stop()


def test_token_create_keeps_an_existing_mode_and_refuses_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.yaml"
    create_token(path, "ops-alice", "operator", capsys)
    path.chmod(0o640)
    create_token(path, "ops-bob", "operator", capsys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    before = path.read_text()
    path.write_text(before + before)  # what appending with >> did: two 'tokens:' keys
    args = ["token", "create", "--principal", "x", "--role", "router", "--file", str(path)]
    assert cli_main(args) == 2
    assert "duplicate key 'tokens'" in capsys.readouterr().err
    assert path.read_text() == before + before  # left as it was
    json_path = tmp_path / "tokens.json"
    create_token(json_path, "ops-carol", "operator", capsys)
    assert json.loads(json_path.read_text())["tokens"][0]["principal"] == "ops-carol"


def test_duplicate_keys_are_refused_in_token_and_experiment_files(tmp_path: Path) -> None:
    entry = f"- principal: a\n  role: operator\n  sha256: {hash_token(new_token())}\n"
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens:\n{entry}tokens:\n{entry}")
    with pytest.raises(InvalidArgument, match=r"line 5.*duplicate key 'tokens'"):
        load_tokens(str(path), None)
    json_path = tmp_path / "tokens.json"
    json_path.write_text('{"tokens": [], "tokens": []}')
    with pytest.raises(InvalidArgument, match="duplicate key 'tokens'"):
        load_tokens(str(json_path), None)
    experiments = tmp_path / "e.yaml"
    experiments.write_text("experiments:\n  - {name: x, arms: [a], arms: [b]}\n")
    with pytest.raises(InvalidArgument, match="duplicate key 'arms'"):
        from bandit_router.operations.experiment_files import load_experiments

        load_experiments(experiments)


def test_server_refuses_duplicate_tokens_keys_at_start(tmp_path: Path) -> None:
    entry = f"- principal: a\n  role: operator\n  sha256: {hash_token(new_token())}\n"
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens:\n{entry}tokens:\n{entry}")
    result = serve("--listen", f"127.0.0.1:{free_port()}", "--tokens-file", str(path))
    assert_one_error_line(result, str(path), "duplicate key 'tokens'")


@pytest.mark.parametrize(
    "text",
    [
        "tokens:\n- principal: a\n  role: operator\n  token: {secret}\n",
        # malformed YAML on the line of the secret: the error must not quote the line
        "tokens:\n- principal: a\n  role: operator\n  sha256: {secret}: [\n",
    ],
)
def test_plaintext_or_malformed_tokens_files_never_show_the_token(
    tmp_path: Path, text: str
) -> None:
    secret = new_token()
    path = tmp_path / "tokens.yaml"
    path.write_text(text.format(secret=secret))
    result = serve("--listen", f"127.0.0.1:{free_port()}", "--tokens-file", str(path))
    line = assert_one_error_line(result, str(path))
    assert secret not in result.stderr + result.stdout
    assert secret[4:20] not in line


# -- start-up failures ---------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port with nothing listening."""
    return free_port()


@pytest.mark.parametrize("json_logs", [False, True])
def test_redis_unreachable_is_one_line(json_logs: bool) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    args = ["--listen", f"127.0.0.1:{free_port()}", "--redis-url", url]
    result = serve(*args, *(["--log-json"] if json_logs else []))
    line = assert_one_error_line(result, "cannot reach Redis", "--wait-for-redis")
    if json_logs:
        record = json.loads(line)
        assert record["level"] == "ERROR" and "cannot reach Redis" in record["message"]
    else:
        assert line.startswith("error: ")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ((), {"BANDIT_ROUTER_REDIS_TIMEOUT": "abc"}, "BANDIT_ROUTER_REDIS_TIMEOUT"),
        ((), {"BANDIT_ROUTER_LOG_JSON": "ture"}, "BANDIT_ROUTER_LOG_JSON"),
        (("--redis-url", "redis+sentinel://127.0.0.1:26379"), {}, "--redis-url: Redis URL"),
        (("--workers", "2"), {}, "--workers > 1 needs --redis-url"),
        (("--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"), {}, "No"),
        (("--experiments", "/nonexistent/e.yaml"), {}, "/nonexistent/e.yaml"),
    ],
)
def test_bad_configuration_is_one_line(
    args: Sequence[str], env: dict[str, str], needle: str
) -> None:
    result = serve("--listen", f"127.0.0.1:{free_port()}", *args, env=env)
    assert_one_error_line(result, needle)


def test_a_bad_serve_variable_does_not_break_other_commands() -> None:
    env = {**os.environ, "BANDIT_ROUTER_REDIS_TIMEOUT": "abc"}
    result = subprocess.run(
        [sys.executable, "-m", "bandit_router", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = serve("--listen", f"127.0.0.1:{port}")
    assert_one_error_line(result, f"127.0.0.1:{port}", "in use")


def test_wait_for_redis_starts_once_redis_comes_up() -> None:
    redis = RedisServer(appendonly=False)  # port chosen, not started yet
    server = ServerProcess("--redis-url", redis.url, "--wait-for-redis", "30")
    server.start(wait=False)
    try:
        time.sleep(1.5)
        assert server.proc is not None and server.proc.poll() is None, server.output()
        redis.start()
        with grpc.insecure_channel(server.target) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
        with BanditClient(server.target, timeout=5) as client:
            client.create_experiment("late", ["a", "b"])
            assert client.route("late").arm in ("a", "b")
        assert "Traceback" not in server.output()
    finally:
        server.stop()
        if server.proc is not None:
            server.proc.wait(20)
        redis.stop()


def test_workers_report_a_start_up_failure_once() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    result = serve("--listen", f"127.0.0.1:{free_port()}", "--redis-url", url, "--workers", "3")
    assert_one_error_line(result, "cannot reach Redis")


def test_redis_refusing_the_credentials_is_one_line() -> None:
    redis = RedisServer(appendonly=False, extra_args=["--requirepass", "right-password"]).start()
    try:
        url = f"redis://:wrong-password@127.0.0.1:{redis.port}/0"
        result = serve("--listen", f"127.0.0.1:{free_port()}", "--redis-url", url)
    finally:
        redis.stop()
    line = assert_one_error_line(result, "refused the credentials")
    assert "wrong-password" not in line
