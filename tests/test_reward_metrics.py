"""Metrics on rewards and the objective, over a real gRPC channel and a real redis-server.

Arm a has quality 0.80 and cost 0.05, arm b quality 0.75 and cost 0.001 (quality observed
with Normal noise, sd 0.05; gaussian_thompson with variance prior beta0 = 0.05^2). With
weights {quality: 1} the objective's gap is 0.05, with {quality: 1, cost_usd: -10} it is
0.74 - 0.30 = 0.44 the other way. Thompson sampling picks the loser with probability
Phi(-gap / se), se the posterior sd of the difference; once the loser has 10 rewards and the
winner 100, se <= 0.05 sqrt(1/10 + 1/100) = 0.017, so Phi(-2.9) < 0.002 per decision for the
smaller gap. Of the last 100 of 400 decisions the winner must take at least 80: the loser's
expected count is well under 5, and 21 would be a > 5 sd excess (binomial). The per-metric
statistics in Redis equal the ground truth exactly (the same sums, in the same order).

The same holds for a contextual policy: ``lin_ts`` with v = 0.05 (the noise's sd), lambda =
0.0025 and one numeric feature with no effect, uniform in [-1, 1]. Features are scaled to
unit norm, so an arm without rewards scores N(0, v^2 / lambda) = N(0, 1): it is drawn above
the other arm's mean (at most 0.8) with probability at least Phi(-0.8) = 0.2 per decision,
so both arms get rewards early (with lambda = 1 the prior's sd would be 0.05 and the first
arm rewarded would lock the other out: half of the runs failed). Once they have 10 and 100,
the score's sd at x is at most 0.05 sqrt(2 / n) (the feature's coefficient at most doubles
the variance), the difference's sd at most 0.023, and the loser is picked with probability
Phi(-2.1) < 0.02 per decision: an expected 2 of the last 100, and 21 would again be a > 5 sd
excess. (The same policy code run offline, 2,000 seeded runs of this problem for each
objective: the winner never took fewer than 92 of the last 100.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import grpc
import pytest
import redis

from bandit_router.client import BanditClient
from bandit_router.v1 import experiment_pb2 as pb
from bandit_router.v1 import router_pb2

from .servers import ServerThread

pytestmark = pytest.mark.integration

QUALITY = {"a": 0.80, "b": 0.75}
COST = {"a": 0.05, "b": 0.001}
ROUNDS = 400
METRICS = [
    pb.MetricSpec(name="quality", kind=pb.METRIC_KIND_CONTINUOUS, min=0.0, max=1.0),
    pb.MetricSpec(name="cost_usd", min=0.0, max=1.0, direction=pb.METRIC_DIRECTION_MINIMIZE),
    pb.MetricSpec(name="error", kind=pb.METRIC_KIND_BINARY),
]


@pytest.fixture
def client(redis_backed_server: ServerThread) -> Iterator[BanditClient]:
    with BanditClient(redis_backed_server.target, timeout=5, max_attempts=1) as c:
        yield c


def create(client: BanditClient, name: str, weights: dict[str, float], policy: str) -> None:
    contextual = policy == "lin_ts"
    client.create_experiment(
        pb.Experiment(
            name=name,
            arms=[pb.Arm(name="a"), pb.Arm(name="b")],
            policy=pb.PolicySpec(
                name=policy,
                params={"v": 0.05, "lambda": 0.0025} if contextual else {"beta0": 0.0025},
            ),
            metrics=METRICS,
            objective=pb.Objective(weights=weights),
            context_features=[pb.ContextFeature(name="seg")] if contextual else [],
        )
    )
    time.sleep(0.15)


def reward(
    client: BanditClient, decision_id: str, metrics: dict[str, float], value: float | None = None
) -> router_pb2.RewardResponse:
    request = router_pb2.RewardRequest(decision_id=decision_id, metrics=metrics)
    if value is not None:  # RewardRequest.value is optional: unset means "the objective's"
        request.value = value
    response: router_pb2.RewardResponse = client.router.Reward(request, timeout=5)
    return response


@pytest.mark.parametrize("policy", ["gaussian_thompson", "lin_ts"])
@pytest.mark.parametrize(
    ("weights", "winner"),
    [({"quality": 1.0}, "a"), ({"quality": 1.0, "cost_usd": -10.0}, "b")],
    ids=["quality", "quality-and-cost"],
)
def test_the_policy_learns_the_objective(
    client: BanditClient, redis_url: str, weights: dict[str, float], winner: str, policy: str
) -> None:
    create(client, "obj", weights, policy)
    rng = random.Random(15)
    truth: dict[str, list[float]] = {"a": [], "b": []}
    chosen = []
    for _ in range(ROUNDS):
        context = {"seg": rng.uniform(-1.0, 1.0)} if policy == "lin_ts" else None
        decision = client.route("obj", context=context)
        quality = min(max(rng.gauss(QUALITY[decision.arm], 0.05), 0.0), 1.0)
        metrics = {"quality": quality, "cost_usd": COST[decision.arm], "error": 0.0}
        reward(client, decision.decision_id, metrics)
        reward(client, decision.decision_id, metrics)  # a retry: counted once
        truth[decision.arm].append(quality)
        chosen.append(decision.arm)
    assert chosen[-100:].count(winner) >= 80, chosen[-100:]
    stored = redis.Redis.from_url(redis_url, decode_responses=True).hgetall("br:{obj}:stats")
    for arm, qualities in truth.items():
        assert float(stored.get(f"{arm}:m:quality:count", 0)) == len(qualities)
        assert float(stored.get(f"{arm}:m:quality:total", 0)) == pytest.approx(
            sum(qualities), rel=1e-12
        )
        assert float(stored.get(f"{arm}:m:error:count", 0)) == len(qualities)


def test_bad_metrics_and_policies_are_refused_naming_the_field(
    client: BanditClient, redis_url: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        create(client, "beta", {"quality": 1.0, "cost_usd": -10.0}, "thompson")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "policy.name" in (raised.value.details() or "")
    assert "gaussian_thompson" in (raised.value.details() or "")
    create(client, "m", {"quality": 1.0}, "gaussian_thompson")
    decision = client.route("m")
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    before = store.hgetall("br:{m}:stats")
    cases: list[tuple[dict[str, float], float | None, str]] = [
        ({"quality": 0.5, "latency": 3.0}, None, "metrics[latency]"),
        ({"quality": float("nan")}, None, "metrics[quality]"),
        ({"quality": 1.5}, None, "metrics[quality]"),
        ({"quality": 0.5, "error": 0.5}, None, "metrics[error]"),
        ({"cost_usd": 0.1}, None, "metrics[quality]"),
        ({"quality": 0.5}, 0.4, "value"),
        ({"quality": 0.5}, 0.0, "value"),  # set to 0, not unset: it must match too
    ]
    for metrics, value, field in cases:
        with pytest.raises(grpc.RpcError) as raised:
            reward(client, decision.decision_id, metrics, value)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, metrics
        assert field in (raised.value.details() or ""), raised.value.details()
    assert store.hgetall("br:{m}:stats") == before
    reward(client, decision.decision_id, {"quality": 0.5}, 0.5)  # equal to the objective: fine
