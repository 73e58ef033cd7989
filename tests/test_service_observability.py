"""Observability of a real server: /metrics after real traffic, GetReport, drift switching.

Metrics are scraped over HTTP from `bandit-router serve` processes (one, and two workers
sharing a port in prometheus-client's multi-process mode) and compared with the traffic sent.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import beta as beta_dist

from bandit_router.client import BanditClient
from bandit_router.v1 import admin_pb2

from .servers import ServerProcess, ServerThread, free_port

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str
) -> float:
    return sum(
        value
        for key, value in samples.get(name, {}).items()
        if all(dict(key).get(k) == v for k, v in labels.items())
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_match_the_traffic_sent(redis_url: str, workers: int) -> None:
    metrics_port = free_port()
    server = ServerProcess(
        "--redis-url",
        redis_url,
        "--workers",
        str(workers),
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
        "--refresh-interval",
        "0.05",
    ).start()
    try:
        routes, rewards, duplicates, bad = 120, 80, 15, 7
        arms: dict[str, int] = defaultdict(int)
        # Several connections, so that with two workers both take traffic.
        clients = [BanditClient(server.target, timeout=5, max_attempts=1) for _ in range(4)]
        clients[0].create_experiment("metered", ["a", "b"], reward_window=60)
        time.sleep(0.3)
        decisions = []
        for i in range(routes):
            decision = clients[i % 4].route("metered")
            arms[decision.arm] += 1
            decisions.append(decision)
        value_sum = 0.0
        for i, decision in enumerate(decisions[:rewards]):
            value = float(i % 2)
            assert clients[i % 4].reward(decision.decision_id, value) == "APPLIED"
            value_sum += value
        for decision in decisions[:duplicates]:
            assert clients[1].reward(decision.decision_id, 1.0) == "DUPLICATE"
        for _ in range(bad):
            with pytest.raises(grpc.RpcError):
                clients[2].reward("garbage", 1.0)
        for c in clients:
            c.close()
        deadline = time.monotonic() + 10
        while True:
            samples = scrape(metrics_port)
            gauges = samples.get("bandit_router_arm_posterior_mean", {})
            # Hot-path counters reach /metrics within the flush interval; every worker flushes
            # on its own, so wait for the counts of the last calls of each kind.
            if (
                total(samples, "bandit_router_decisions_total") == routes
                and len(gauges) >= 2
                and total(samples, "grpc_server_handling_seconds_count", grpc_method="Reward")
                == rewards + duplicates + bad
            ) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for arm, count in arms.items():
            assert (
                total(samples, "bandit_router_decisions_total", experiment="metered", arm=arm)
                == count
            )
        assert total(samples, "bandit_router_rewards_total", outcome="applied") == rewards
        assert total(samples, "bandit_router_rewards_total", outcome="duplicate") == duplicates
        assert total(samples, "bandit_router_reward_value_total", experiment="metered") == value_sum
        handled = "grpc_server_handled_total"
        assert total(samples, handled, grpc_method="Route", grpc_code="OK") == routes
        assert total(samples, handled, grpc_method="Reward", grpc_code="OK") == rewards + duplicates
        assert total(samples, handled, grpc_method="Reward", grpc_code="INVALID_ARGUMENT") == bad
        latency = "grpc_server_handling_seconds_count"
        assert total(samples, latency, grpc_method="Route") == routes
        assert total(samples, latency, grpc_method="Reward") == rewards + duplicates + bad
        store = "bandit_router_store_duration_seconds_count"
        assert total(samples, store, operation="reward") == rewards + duplicates
        assert total(samples, store, operation="refresh") > 0
        assert total(samples, store, operation="record_decisions") > 0
        assert total(samples, "bandit_router_store_errors_total") == 0
        buckets = samples["grpc_server_handling_seconds_bucket"]
        assert any(dict(key).get("le") == "5e-05" for key in buckets)  # sub-millisecond buckets
        # The posterior gauges follow the shared statistics on every worker.
        means = {
            dict(k)["arm"]: v
            for k, v in samples["bandit_router_arm_posterior_mean"].items()
            if dict(k).get("experiment") == "metered"
        }
        assert set(means) == {"a", "b"}
        assert all(0.0 < m < 1.0 for m in means.values())
    finally:
        server.stop()


def test_report_matches_closed_form_beta_posteriors(embedded_server: ServerThread) -> None:
    with BanditClient(embedded_server.target, timeout=5) as client:
        client.create_experiment("report", ["a", "b"], reward_window=60)
        wins = {"a": (8, 10), "b": (3, 10)}  # (successes, trials) per arm
        for arm, (successes, trials) in wins.items():
            other = "b" if arm == "a" else "a"
            for i in range(trials):
                decision = client.route("report", excluded_arms=[other])
                client.reward(decision.decision_id, 1.0 if i < successes else 0.0)
        time.sleep(0.2)  # decisions are logged and counted within the recorder's 25 ms linger
        response = client.call_admin("GetReport", admin_pb2.GetReportRequest(experiment="report"))
    rows = {row.arm: row for row in response.arms}
    for arm, (successes, trials) in wins.items():
        a, b = 1 + successes, 1 + trials - successes  # uniform Beta(1, 1) prior
        row = rows[arm]
        assert row.decisions == trials
        assert row.rewards == trials
        assert row.mean == pytest.approx(a / (a + b), abs=1e-12)
        assert row.ci_low == pytest.approx(beta_dist.ppf(0.025, a, b), abs=1e-9)
        assert row.ci_high == pytest.approx(beta_dist.ppf(0.975, a, b), abs=1e-9)
        assert row.recent_share == pytest.approx(0.5)
    # P(theta_a > theta_b) for integer Beta parameters, Evan Miller's closed form.
    a1, b1, a2, b2 = 9, 3, 4, 8
    exact = 1 - sum(
        math.exp(
            math.lgamma(a1 + i)
            + math.lgamma(b1 + b2)
            + math.lgamma(1 + i + b2)
            + math.lgamma(a1 + b1)
            - math.log(b2 + i)
            - math.lgamma(1 + i)
            - math.lgamma(a1 + b1 + b2 + i)
            - math.lgamma(b2)
            - math.lgamma(a1)
            - math.lgamma(b1)
        )
        for i in range(a2)
    )
    assert rows["a"].prob_best == pytest.approx(exact, abs=1e-7)
    assert rows["a"].prob_best + rows["b"].prob_best == pytest.approx(1.0, abs=1e-9)
    # 10 rewards per arm are below the report's minimum of 30: no recommendation yet.
    assert response.recommendation.startswith("not enough data")
    assert "a (10), b (10)" in response.recommendation


def test_drift_switches_the_experiment_to_a_discounted_policy(
    embedded_server: ServerThread,
) -> None:
    with BanditClient(embedded_server.target, timeout=5) as client:
        created = client.create_experiment("drifty", ["a", "b"], reward_window=60)
        experiment = created
        experiment.drift_discount = 0.95
        client.call_admin(
            "UpdateExperiment",
            admin_pb2.UpdateExperimentRequest(
                experiment=experiment, update_mask={"paths": ["drift_discount"]}
            ),
        )
        time.sleep(0.2)
        # Arm a pays every time, then never: a change of mean of 1, far above delta.
        for phase_value in (1.0, 0.0):
            for _ in range(150):
                decision = client.route("drifty", excluded_arms=["b"])
                client.reward(decision.decision_id, phase_value)
                time.sleep(0.001)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            params = client.get_experiment("drifty").experiment.policy.params
            if params.get("gamma") == pytest.approx(0.95):
                break
            time.sleep(0.1)
        assert client.get_experiment("drifty").experiment.policy.params["gamma"] == pytest.approx(
            0.95
        )
        audit = client.call_admin("ListAudit", admin_pb2.ListAuditRequest(experiment="drifty"))
        switch = [e for e in audit.entries if e.action == "switch_to_discounted"]
        assert switch and switch[0].principal == "drift-detector"
        # The entry says how to undo it: the policy parameters before the switch.
        arguments = json.loads(switch[0].arguments)
        assert arguments["previous_policy_params"] == {} and arguments["arms"] == ["a"]
        report = client.call_admin("GetReport", admin_pb2.GetReportRequest(experiment="drifty"))
        assert {row.arm: row.drift_detected for row in report.arms}["a"] is True
        # An operator reverts (the old parameters, no discount): detection starts afresh.
        reverted = client.get_experiment("drifty").experiment
        reverted.policy.params.clear()
        reverted.policy.params.update(arguments["previous_policy_params"])
        client.call_admin(
            "UpdateExperiment",
            admin_pb2.UpdateExperimentRequest(
                experiment=reverted, update_mask={"paths": ["policy"]}, reason="revert"
            ),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            report = client.call_admin("GetReport", admin_pb2.GetReportRequest(experiment="drifty"))
            if not {row.arm: row.drift_detected for row in report.arms}["a"]:
                break
            time.sleep(0.1)
        assert {row.arm: row.drift_detected for row in report.arms}["a"] is False
        assert "gamma" not in client.get_experiment("drifty").experiment.policy.params


def test_json_logs_carry_decision_ids_and_no_secrets(tmp_path: Path) -> None:
    """One JSON line per notable event; the Redis password and tokens never appear."""
    import json

    from bandit_router.operations.auth import hash_token, new_token

    from .servers import RedisServer

    password = "s3cret-redis-pass"
    redis = RedisServer(extra_args=["--requirepass", password]).start()
    token = new_token()
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        f"tokens:\n  - {{principal: ops, role: operator, sha256: {hash_token(token)}}}\n"
    )
    url = f"redis://:{password}@127.0.0.1:{redis.port}/0"
    server = ServerProcess("--redis-url", url, "--log-json", "--tokens-file", str(tokens)).start()
    try:
        with BanditClient(server.target, timeout=5, token=token, max_attempts=1) as client:
            client.create_experiment("logged", ["a", "b"], reason="launch")
            decision = client.route("logged")
            forged = decision.decision_id[:-2] + (
                "AA" if not decision.decision_id.endswith("AA") else "BB"
            )
            with pytest.raises(grpc.RpcError):
                client.reward(forged, 1.0)
        server.stop()
        output = server.output()
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert lines and len(lines) == len([line for line in output.splitlines() if line.strip()])
        refused = [line for line in lines if line.get("code") == "INVALID_ARGUMENT"]
        assert refused and refused[0]["decision_id"] == forged
        assert any(
            line.get("action") == "create" and line.get("principal") == "ops" for line in lines
        )
        assert password not in output
        assert token not in output
    finally:
        server.stop()
        redis.stop()
