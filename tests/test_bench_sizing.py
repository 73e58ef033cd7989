"""``bandit-router bench --sizing``: the sizing arithmetic from given per-call costs, and the
measurement end to end against a real redis-server and a real 3-master Redis Cluster (tiny
counts; its numbers are checked for sign and shape, never for speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bandit_router.bench.sizing import (
    RATES,
    Assumptions,
    Costs,
    plan,
    render,
    shard_rewards_per_second,
)

COSTS = Costs(
    redis_route_us=10.0,
    redis_reward_us=40.0,
    server_route_us=200.0,
    server_reward_us=300.0,
    redis_idle_us_per_s=1000.0,
    pending_bytes=200.0,
    log_bytes=100.0,
    marker_bytes=300.0,
    experiment_bytes=10_000.0,
)


def test_a_plan_is_the_costs_times_the_rate_over_the_headroom() -> None:
    row = plan(COSTS, 10_000, Assumptions())
    # Server: 10k x (200 + 300) us = 5 cores; at most 50% busy: 10 processes.
    assert row.server_processes == 10
    # Redis: 10k x (10 + 40) us + 10 processes x 1 ms/s idle = 0.51 cores; 50% busy: 2 shards.
    assert row.redis_cores == pytest.approx(0.51)
    assert row.redis_shards == 2
    # Window: 10k/s x 600 s x max(pending 200, marker 300) B; log: 10k/s x 3600 s x 100 B.
    assert row.window_bytes == pytest.approx(1.8e9)
    assert row.log_bytes == pytest.approx(3.6e9)
    assert row.experiment_bytes == pytest.approx(100 * 10_000)
    assert row.memory_bytes == pytest.approx(1.8e9 + 3.6e9 + 1e6)


def test_the_assumptions_change_the_plan_as_stated() -> None:
    half = Assumptions(rewards_per_decision=0.5, utilisation=1.0, reward_window_seconds=60)
    row = plan(COSTS, 1_000, half)
    # Server: 1k x 200 + 500 x 300 us = 0.35 cores: 1 process at 100% busy.
    assert row.server_processes == 1
    assert row.redis_cores == pytest.approx((1_000 * 10 + 500 * 40 + 1_000) / 1e6)
    assert row.redis_shards == 1
    assert row.window_bytes == pytest.approx(1_000 * 60 * 300)
    pending_heavier = Costs(**{**COSTS.__dict__, "pending_bytes": 900.0})
    assert plan(pending_heavier, 1_000, half).window_bytes == pytest.approx(1_000 * 60 * 900)


def test_one_shard_sustains_one_core_over_the_redis_cost_of_a_pair() -> None:
    assert shard_rewards_per_second(COSTS) == pytest.approx(1e6 / 50)


def test_the_table_has_every_rate_and_states_its_assumptions() -> None:
    text = render(COSTS, Assumptions(), "a test", 100)
    for rate in RATES:
        assert f"{rate:,}" in text
    assert "assumptions:" in text
    assert "reward window 600 s" in text
    assert "noisy shared machine" in text


@pytest.mark.integration
@pytest.mark.parametrize("cluster", [[], ["--redis-cluster", "3"]], ids=["single", "cluster"])
def test_sizing_measures_positive_costs_on_real_redis(tmp_path: Path, cluster: list[str]) -> None:
    out = tmp_path / "sizing.json"
    command = [sys.executable, "-m", "bandit_router", "bench", "--sizing", "--quick", *cluster]
    result = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "decisions/s" in result.stdout
    report = json.loads(out.read_text())
    costs = report["costs"]
    for name in (
        "redis_route_us",
        "redis_reward_us",
        "server_route_us",
        "server_reward_us",
        "pending_bytes",
        "log_bytes",
        "marker_bytes",
        "experiment_bytes",
        "saturation_rewards_per_s",
    ):
        assert costs[name] > 0, (name, costs, result.stdout)
    assert [row["decisions_per_second"] for row in report["plans"]] == list(RATES)
    assert all(row["redis_shards"] >= 1 for row in report["plans"])
