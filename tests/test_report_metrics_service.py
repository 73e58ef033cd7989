"""The report's metric section on a real server and real redis-server: per-arm metric
summaries equal to what the rewards carried, sketch quantiles within 1% of the exact ones,
the Pareto front and significant dominance, the objective, a guardrail's window and an
objective constraint's exclusion; through gRPC and through `bandit-router report`.

The data make every verdict certain, not likely (seed 15, 150 rewards per arm):

* a: quality Bernoulli(0.8), cost 0.05, latency log-normal around 300 ms;
  b: quality Bernoulli(0.6), cost 0.001, latency around 120 ms;
  c: quality Bernoulli(0.5), cost 0.06, latency around 400 ms.
* c is dominated by a and by b on the means (worse quality, dearer, slower), and
  significantly by both: a's quality gap 0.3 is over 5 standard errors (sd of the difference
  <= 0.058), beyond the Bonferroni-adjusted 2.39, and b's latencies (median 120 against 400
  with log-sd 0.5) differ by over 20 standard errors. a and b trade quality against cost and
  latency: both on the front.
* Objective quality - 10 cost_usd: a 0.3, b 0.59, c -0.1 (each within 0.1 of that: a
  binomial mean of 150 is within 3.5 sd = 0.14 of its truth with probability > 0.999, and
  the seed is fixed), so b is the reference arm.
* The constraint "mean cost_usd <= 0.02" (on [0, 0.1], so y = cost / 0.1 against 0.2)
  excludes a and c: their y is 0.5 and 0.6 on every reward, and the anytime-valid evidence
  reaches 1 / 0.05 within ~30 rewards (``policies.bounded_mean``); b (0.01) stays eligible.
* The guardrail "latency_ms p90 <= 5000": no value of these samples exceeds 5000, so every
  arm's rule is satisfied over its 150 window samples (the evidence against "over 10% above"
  from n values all below is 15.2 at n = 150, above log 20 = 3.0 from n = 32 on:
  ``policies.bounded_mean.log_evidence_below(n, 0, 0.1)``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest

from bandit_router.cli import main as cli_main
from bandit_router.client import BanditClient
from bandit_router.v1 import admin_pb2, router_pb2
from bandit_router.v1 import experiment_pb2 as pb
from policies import metric_report as maths

from .servers import ServerThread

pytestmark = pytest.mark.integration

ARMS = {
    "a": (0.8, 0.05, 300.0),
    "b": (0.6, 0.001, 120.0),
    "c": (0.5, 0.06, 400.0),
}
PER_ARM = 150
METRICS = [
    pb.MetricSpec(name="quality", kind=pb.METRIC_KIND_BINARY),
    pb.MetricSpec(name="cost_usd", min=0.0, max=0.1, direction=pb.METRIC_DIRECTION_MINIMIZE),
    pb.MetricSpec(name="latency_ms", min=0.0, direction=pb.METRIC_DIRECTION_MINIMIZE),
]


@pytest.fixture
def client(redis_backed_server: ServerThread) -> Iterator[BanditClient]:
    with BanditClient(redis_backed_server.target, timeout=5, max_attempts=1) as c:
        yield c


def experiment(constrained: bool) -> pb.Experiment:
    found = pb.Experiment(
        name="tradeoff",
        arms=[pb.Arm(name=arm) for arm in ARMS],
        policy=pb.PolicySpec(name="gaussian_thompson", params={"beta0": 0.01}),
        metrics=METRICS,
        objective=pb.Objective(weights={"quality": 1.0, "cost_usd": -10.0}),
        guardrails=[
            pb.GuardrailRule(
                metric="latency_ms",
                statistic=pb.GUARDRAIL_STATISTIC_QUANTILE,
                quantile=0.9,
                max=5000.0,
                min_samples=50,
            )
        ],
    )
    found.guardrails[0].window.FromSeconds(600)
    if constrained:
        found.objective.constraints.append(pb.Constraint(metric="cost_usd", max_mean=0.02))
    return found


def drive(client: BanditClient) -> dict[str, dict[str, list[float]]]:
    """150 rewards per arm (Route told to exclude the others); what each arm was sent."""
    rng = np.random.default_rng(15)
    sent: dict[str, dict[str, list[float]]] = {
        arm: {"quality": [], "cost_usd": [], "latency_ms": []} for arm in ARMS
    }
    for _ in range(PER_ARM):
        for arm, (quality, cost, latency) in ARMS.items():
            others = [other for other in ARMS if other != arm]
            decision = client.route("tradeoff", excluded_arms=others)
            assert decision.arm == arm
            metrics = {
                "quality": float(rng.random() < quality),
                "cost_usd": cost,
                "latency_ms": float(rng.lognormal(math.log(latency), 0.5)),
            }
            client.router.Reward(
                router_pb2.RewardRequest(decision_id=decision.decision_id, metrics=metrics),
                timeout=5,
            )
            for name, value in metrics.items():
                sent[arm][name].append(value)
    return sent


def test_the_report_shows_metrics_trade_offs_guardrails_and_constraints(
    client: BanditClient, redis_backed_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    client.create_experiment(experiment(constrained=False))
    time.sleep(0.2)
    sent = drive(client)
    current = client.call_admin(
        "GetExperiment", admin_pb2.GetExperimentRequest(name="tradeoff")
    ).experiment
    update = experiment(constrained=True)
    client.call_admin(
        "UpdateExperiment",
        admin_pb2.UpdateExperimentRequest(
            experiment=update, expected_version=current.version, reason="cap the cost"
        ),
    )
    time.sleep(0.3)
    response: admin_pb2.GetReportResponse = client.call_admin(
        "GetReport", admin_pb2.GetReportRequest(experiment="tradeoff")
    )
    assert response.metric_confidence == 0.95
    assert response.objective == "quality - 10 cost_usd"
    assert response.quantile_relative_error == pytest.approx((1.02 - 1) / (1.02 + 1))
    arms = {arm.arm: arm for arm in response.arms}

    for name, arm in arms.items():
        summaries = {m.metric: m for m in arm.metrics}
        assert list(summaries) == ["quality", "cost_usd", "latency_ms"]
        for metric, values in sent[name].items():
            summary = summaries[metric]
            data = np.array(values)
            assert summary.count == PER_ARM
            assert summary.mean == pytest.approx(float(data.mean()), rel=1e-12)
            stats = maths.MetricStats(len(data), float(data.sum()), float((data**2).sum()))
            binary = metric == "quality"
            bounds = (0.0, 0.1) if metric == "cost_usd" else (0.0, math.inf)
            low, high = maths.mean_interval(stats, binary, 0.95, bounds)
            # abs: a constant metric's variance is rounding noise of the running sums
            # (Redis adds them in its own order), of order 1e-16 x sum of squares.
            assert (summary.ci_low, summary.ci_high) == pytest.approx(
                (low, high), rel=1e-9, abs=1e-7
            )
            assert summary.interval == ("wilson" if binary else "t")
            assert summary.HasField("p50") is not binary
        latency = np.array(sent[name]["latency_ms"])
        for q, reported in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            exact = float(np.quantile(latency, q, method="lower"))
            assert abs(getattr(summaries["latency_ms"], reported) - exact) <= 0.0099 * exact

        (rule,) = arm.guardrail.rules
        assert rule.description == "latency_ms p90 <= 5000"
        assert rule.samples == PER_ARM and rule.value == 0.0 and rule.verdict == "satisfied"
        assert arm.state == pb.ARM_STATE_ACTIVE

    assert {name for name, arm in arms.items() if arm.pareto_optimal} == {"a", "b"}
    assert all(arm.pareto_judged for arm in arms.values())
    assert list(arms["c"].dominated_by) == ["a", "b"]
    assert list(arms["c"].significantly_dominated_by) == ["a", "b"]
    for name, value in (("a", 0.3), ("b", 0.59), ("c", -0.1)):
        assert arms[name].objective == pytest.approx(value, abs=0.1)
        assert arms[name].objective_ci_low < arms[name].objective < arms[name].objective_ci_high

    assert response.reference_arm == "b"
    assert not arms["b"].differences
    a_vs_b = {d.metric: d for d in arms["a"].differences}
    assert a_vs_b["quality"].better and a_vs_b["quality"].significant
    assert not a_vs_b["cost_usd"].better and a_vs_b["cost_usd"].significant
    assert a_vs_b["cost_usd"].relative == pytest.approx((0.05 - 0.001) / 0.001)

    assert "mean cost_usd <= 0.02 broken" in arms["a"].constraint_exclusion
    assert "mean cost_usd <= 0.02 broken" in arms["c"].constraint_exclusion
    assert arms["b"].constraint_exclusion == ""

    target = redis_backed_server.target
    assert cli_main(["report", "tradeoff", "--target", target]) == 0
    out = capsys.readouterr().out
    for words in (
        "quality (maximize)",
        "objective quality - 10 cost_usd",
        "differences against b",
        "front",
        "latency_ms p90 <= 5000",
        "a excluded: mean cost_usd <= 0.02 broken",
    ):
        assert words in out, words


def test_a_forced_quarantine_shows_in_the_report_with_a_fresh_window(
    client: BanditClient, redis_backed_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator forces b into quarantine: the report shows it quarantined, the override,
    the transition's summary and epoch, and b's rule reading the new epoch (no samples yet),
    while a's window keeps its 60 rewards."""
    found = pb.Experiment(
        name="forced-report",
        arms=[pb.Arm(name="a"), pb.Arm(name="b")],
        metrics=[pb.MetricSpec(name="error", kind=pb.METRIC_KIND_BINARY)],
        guardrails=[
            pb.GuardrailRule(metric="error", statistic=pb.GUARDRAIL_STATISTIC_RATE, max=0.05)
        ],
    )
    found.guardrails[0].window.FromSeconds(600)
    client.create_experiment(found)
    time.sleep(0.2)
    for arm, other in (("a", "b"), ("b", "a")):
        for _ in range(60):
            decision = client.route("forced-report", excluded_arms=[other])
            assert decision.arm == arm
            client.router.Reward(
                router_pb2.RewardRequest(decision_id=decision.decision_id, metrics={"error": 0.0}),
                timeout=5,
            )
    current = client.call_admin(
        "GetExperiment", admin_pb2.GetExperimentRequest(name="forced-report")
    ).experiment
    current.arms[1].guardrail_override = pb.GUARDRAIL_OVERRIDE_FORCE_QUARANTINE
    client.call_admin(
        "UpdateExperiment",
        admin_pb2.UpdateExperimentRequest(
            experiment=current, expected_version=current.version, reason="b misbehaves"
        ),
    )
    time.sleep(0.3)
    response: admin_pb2.GetReportResponse = client.call_admin(
        "GetReport", admin_pb2.GetReportRequest(experiment="forced-report")
    )
    arms = {arm.arm: arm for arm in response.arms}
    assert arms["a"].state == pb.ARM_STATE_ACTIVE
    assert arms["b"].state == pb.ARM_STATE_QUARANTINED
    guard = arms["b"].guardrail
    assert guard.override == pb.GUARDRAIL_OVERRIDE_FORCE_QUARANTINE
    assert guard.status.epoch == 1 and "force_quarantine" in guard.status.summary
    assert [(r.samples, r.verdict) for r in guard.rules] == [(0, "undecided")]
    assert arms["a"].guardrail.rules[0].samples == 60
    assert arms["a"].guardrail.rules[0].value == 0.0
    assert [m.count for m in arms["b"].metrics] == [60]  # the metric's totals are kept

    assert cli_main(["report", "forced-report", "--target", redis_backed_server.target]) == 0
    out = capsys.readouterr().out
    assert "quarantined" in out and "error rate <= 0.05" in out
