"""Serving configuration: experiment files (YAML/TOML), flags and environment, client retries."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from bandit_router.client import BanditClient
from bandit_router.errors import InvalidArgument
from bandit_router.operations.experiment_files import load_experiments, parse_duration
from bandit_router.v1 import router_pb2, router_pb2_grpc

from .servers import ServerProcess, free_port

TOML = """
[[experiments]]
name = "checkout"
arms = ["one", "two"]
reward_window = "90s"
default_reward = 0.0
late_rewards = "apply"

[experiments.policy]
name = "gaussian_thompson"
params = { mu0 = 10.0 }
"""


def test_toml_and_yaml_files_load(tmp_path: Path) -> None:
    toml = tmp_path / "e.toml"
    toml.write_text(TOML)
    [experiment] = load_experiments(toml)
    assert experiment.name == "checkout"
    assert experiment.reward_window == 90.0
    assert experiment.policy.name == "gaussian_thompson"
    assert experiment.late_rewards.value == "apply"
    yaml_file = tmp_path / "e.yaml"
    yaml_file.write_text("experiments:\n  - {name: x, arms: [a, b], reward_window: 2h}\n")
    assert load_experiments(yaml_file)[0].reward_window == 7200.0


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("experiments:\n  - {name: x, arms: [a, a]}\n", "experiments[0].arms[1].name"),
        ("experiments:\n  - {name: x, arms: [a], policy: nope}\n", "policy.name"),
        ("experiments:\n  - {name: x, arms: [a], reward_window: soon}\n", "reward_window"),
        ("experiments:\n  - {name: x, arms: [a], colour: red}\n", "experiments[0]"),
        ("experiments: 3\n", "e.yaml"),
        ("experiments: [\n", "e.yaml"),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgument) as error:
        load_experiments(path)
    assert field in str(error.value)


def test_durations() -> None:
    assert parse_duration("250ms", "d") == pytest.approx(0.25)
    assert parse_duration("7d", "d") == 7 * 86400
    assert parse_duration(30, "d") == 30.0


def test_serve_loads_a_file_from_the_environment_and_continuous_rewards(
    tmp_path: Path, redis_url: str
) -> None:
    path = tmp_path / "e.toml"
    path.write_text(TOML)
    server = ServerProcess(
        env={"BANDIT_ROUTER_EXPERIMENTS": str(path), "BANDIT_ROUTER_REDIS_URL": redis_url}
    ).start()
    try:
        with BanditClient(server.target, timeout=5) as client:
            decision = client.route("checkout", excluded_arms=["two"])
            assert decision.policy == "gaussian_thompson"
            assert client.reward(decision.decision_id, 12.5) == "APPLIED"  # continuous reward
            stats = {s.arm: s for s in client.get_experiment("checkout").statistics}
            assert (stats["one"].n, stats["one"].sum, stats["one"].sum_sq) == (1.0, 12.5, 156.25)
    finally:
        server.stop()
    # A restart with the same file leaves the live experiment (and its statistics) alone.
    server = ServerProcess(
        env={"BANDIT_ROUTER_EXPERIMENTS": str(path), "BANDIT_ROUTER_REDIS_URL": redis_url}
    ).start()
    try:
        with BanditClient(server.target, timeout=5) as client:
            stats = {s.arm: s for s in client.get_experiment("checkout").statistics}
            assert stats["one"].sum == 12.5
        assert "left unchanged" in server.output()
    finally:
        server.stop()


def test_serve_refuses_a_bad_file_clearly(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("experiments:\n  - {name: x, arms: []}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bandit_router",
            "serve",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--experiments",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "experiments[0].arms" in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_store_says_it_is_not_durable() -> None:
    server = ServerProcess("--example").start()
    try:
        with BanditClient(server.target, timeout=5) as client:
            assert client.route("homepage").arm in {"ranker-a", "ranker-b", "ranker-c"}
    finally:
        server.stop()
    assert "NOT durable" in server.output()


class FlakyRouter(router_pb2_grpc.RouterServicer):
    """Answers UNAVAILABLE to the first two calls of each method, then succeeds."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {"Route": 0, "Reward": 0}

    async def Route(self, request: Any, context: Any) -> router_pb2.RouteResponse:
        self.calls["Route"] += 1
        if self.calls["Route"] <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return router_pb2.RouteResponse(decision_id="d", arm="a", propensity=1.0)

    async def Reward(self, request: Any, context: Any) -> router_pb2.RewardResponse:
        self.calls["Reward"] += 1
        if self.calls["Reward"] <= 2:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "failing over")
        return router_pb2.RewardResponse(outcome=router_pb2.REWARD_OUTCOME_DUPLICATE)


def test_clients_retry_unavailable() -> None:
    servicer = FlakyRouter()
    port = free_port()

    async def scenario() -> None:
        server = grpc.aio.server()
        router_pb2_grpc.add_RouterServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:

            def sync_calls() -> tuple[str, str]:
                with BanditClient(f"127.0.0.1:{port}", timeout=5) as client:
                    return client.route("x").arm, client.reward("d", 1.0)

            assert await asyncio.to_thread(sync_calls) == ("a", "DUPLICATE")
            assert servicer.calls == {"Route": 3, "Reward": 3}
            with BanditClient(f"127.0.0.1:{port}", timeout=5, max_attempts=1) as client:
                servicer.calls = {"Route": 0, "Reward": 0}
                with pytest.raises(grpc.RpcError) as error:
                    await asyncio.to_thread(client.route, "x")
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(0)

    asyncio.run(scenario())


def _serve_config(*argv: str) -> Any:
    import argparse

    from bandit_router.serving.config import add_server_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_overload_drain_and_drift_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags of the edges work: from the command line, from the environment, and a bad
    value is one ConfigError naming the flag."""
    from bandit_router.serving.config import ConfigError

    config = _serve_config(
        "--drift-delta", "0.5", "--drift-threshold", "30", "--drain-delay", "2",
        "--max-concurrent-rpcs", "8", "--max-pending-rpcs", "16",
    )  # fmt: skip
    assert (config.drift_delta, config.drift_threshold, config.drain_delay) == (0.5, 30.0, 2.0)
    assert (config.max_concurrent_rpcs, config.max_pending_rpcs) == (8, 16)
    defaults = _serve_config()
    assert (defaults.drift_delta, defaults.drift_threshold) == (0.25, 25.0)
    assert (defaults.max_concurrent_rpcs, defaults.max_pending_rpcs) == (1024, 64)
    monkeypatch.setenv("BANDIT_ROUTER_DRIFT_THRESHOLD", "40")
    monkeypatch.setenv("BANDIT_ROUTER_DRAIN_DELAY", "3")
    from_env = _serve_config()
    assert (from_env.drift_threshold, from_env.drain_delay) == (40.0, 3.0)
    with pytest.raises(ConfigError, match="--drift-delta"):
        _serve_config("--drift-delta", "0")
    with pytest.raises(ConfigError, match="--max-concurrent-rpcs"):
        _serve_config("--max-pending-rpcs", "0")
