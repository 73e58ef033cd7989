"""Contextual experiments served over a real gRPC channel by a server on a real redis-server:
the features a decision used reach its arm's statistics exactly once (rewards, duplicates,
default rewards), the log carries them with every eligible arm's probability, and every bad
input is refused with its status, naming its field, writing nothing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import redis

from bandit_router.client import BanditClient
from bandit_router.v1 import admin_pb2
from bandit_router.v1 import experiment_pb2 as pb
from policies import ContextualStats, create_policy

from .servers import ServerThread
from .test_policies_laws import _check_counts

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
FAILED = grpc.StatusCode.FAILED_PRECONDITION
ARMS = ("a", "b", "c")
#: seg (numeric, scale 2), tier (categorical): x = [1, seg / 2, free, premium, other]
FEATURES = [
    pb.ContextFeature(name="seg", scale=2.0),
    pb.ContextFeature(name="tier", values=["free", "premium"]),
]
DIM = 5


def vector(seg: float | None, tier: str | None) -> list[float]:
    x = [1.0, 0.0 if seg is None else seg / 2.0, 0.0, 0.0, 0.0]
    x[{"free": 2, "premium": 3}.get(tier or "", 4)] = 1.0
    return x


@pytest.fixture
def server(redis_backed_server: ServerThread) -> ServerThread:
    return redis_backed_server


@pytest.fixture
def client(server: ServerThread) -> Iterator[BanditClient]:
    with BanditClient(server.target, timeout=5, max_attempts=1) as c:
        yield c


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


def create(client: BanditClient, name: str = "ctx", policy: str = "lin_ts", **fields: Any) -> None:
    fields.setdefault("reward_window", 600)
    client.create_experiment(name, ARMS, policy=policy, context_features=FEATURES, **fields)
    time.sleep(0.15)  # two cache refreshes


def arm_statistics(store: redis.Redis, name: str) -> dict[str, tuple[float, Any, Any]]:
    """(n, A, b) per arm as the store holds them."""
    raw = store.hgetall(f"br:{{{name}}}:stats")
    result = {}
    for arm in ARMS:
        gram = np.zeros((DIM, DIM))
        b = np.zeros(DIM)
        for i in range(DIM):
            b[i] = float(raw.get(f"{arm}:b:{i}", 0.0))
            for j in range(i, DIM):
                gram[i, j] = gram[j, i] = float(raw.get(f"{arm}:A:{i}:{j}", 0.0))
        result[arm] = (float(raw.get(f"{arm}:n", 0.0)), gram, b)
    return result


def dump(store: redis.Redis) -> dict[str, Any]:
    """Every key's content (the health probe aside, which the server writes on its own)."""
    content: dict[str, Any] = {}
    for key in sorted(store.scan_iter("br:*")):
        if key.startswith("br:health"):
            continue
        kind = store.type(key)
        if kind == "string":
            content[key] = store.get(key)
        elif kind == "hash":
            content[key] = store.hgetall(key)
        elif kind == "zset":
            content[key] = store.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            content[key] = store.xrange(key)
        elif kind == "set":
            content[key] = sorted(store.smembers(key))
        elif kind == "list":
            content[key] = store.lrange(key, 0, -1)
    return content


def expect_refused(
    store: redis.Redis, call: Callable[[], Any], code: grpc.StatusCode, field: str
) -> None:
    time.sleep(0.1)  # earlier decisions flushed
    before = dump(store)
    with pytest.raises(grpc.RpcError) as raised:
        call()
    details = raised.value.details() or ""
    assert raised.value.code() == code, details
    assert field in details, details
    time.sleep(0.1)  # a decision it had taken would be flushed by now
    assert dump(store) == before


def test_rewards_fold_the_decisions_features_exactly_once(
    client: BanditClient, store: redis.Redis
) -> None:
    create(client)
    rng = np.random.default_rng(3)
    expected = {arm: (0.0, np.zeros((DIM, DIM)), np.zeros(DIM)) for arm in ARMS}
    for index in range(120):
        seg = float(rng.integers(0, 3))
        tier = ["free", "premium", "gold", None][index % 4]
        attributes = {"tier": tier} if tier else {}
        decision = client.route("ctx", context={"seg": seg, "noise": 9.0}, attributes=attributes)
        assert 0.0 < decision.propensity <= 1.0
        value = float(rng.random() < 0.5)
        assert client.reward(decision.decision_id, value) == "APPLIED"
        if index % 10 == 0:  # a retry changes nothing
            assert client.reward(decision.decision_id, value) == "DUPLICATE"
        x = np.array(vector(seg, tier))
        n, gram, b = expected[decision.arm]
        expected[decision.arm] = (n + 1, gram + np.outer(x, x), b + value * x)
    stored = arm_statistics(store, "ctx")
    for arm in ARMS:
        n, gram, b = expected[arm]
        assert stored[arm][0] == n
        assert np.array_equal(stored[arm][1], gram)  # integers and halves: exact
        assert np.array_equal(stored[arm][2], b)


def test_stored_statistics_are_the_bits_of_the_policys_own_update(
    client: BanditClient, store: redis.Redis
) -> None:
    """With features and rewards that are not integers, the store's A and b are bit for bit
    what ``outer_increment`` and the policy's b += r x give in float64 for the same rewards in
    the same order (the Lua adds in double precision and writes sums that read back exactly),
    not merely close to them."""
    from policies.contextual import outer_increment

    create(client)
    rng = np.random.default_rng(5)
    expected = {arm: (np.zeros((DIM, DIM)), np.zeros(DIM)) for arm in ARMS}
    for _ in range(60):
        seg = float(rng.normal(0.0, 3.0))
        decision = client.route("ctx", context={"seg": seg}, attributes={"tier": "free"})
        value = float(rng.random())
        assert client.reward(decision.decision_id, value) == "APPLIED"
        x = np.array(vector(seg, "free"))
        gram, b = expected[decision.arm]
        gram += outer_increment(np.ones(1), x[None, :])[0]
        b += value * x
    stored = arm_statistics(store, "ctx")
    for arm in ARMS:
        gram, b = expected[arm]
        assert np.array_equal(np.triu(stored[arm][1]), np.triu(gram)), arm
        assert np.array_equal(stored[arm][2], b), arm


def test_log_and_export_carry_features_and_every_eligible_arms_probability(
    client: BanditClient,
) -> None:
    create(client)
    sent = {}
    for seg, tier in [(0.0, "free"), (2.0, "premium"), (1.0, None)]:
        attributes = {"tier": tier} if tier else {}
        decision = client.route("ctx", context={"seg": seg}, attributes=attributes)
        sent[decision.decision_id] = (vector(seg, tier), attributes, decision)
    excluded = client.route("ctx", excluded_arms=["b"], context={"seg": 1.0})
    time.sleep(0.2)
    records = {r.decision_id: r for r in client.export_decisions("ctx")}
    for decision_id, (x, attributes, decision) in sent.items():
        record = records[decision_id]
        assert list(record.features) == x
        assert dict(record.attributes) == attributes
        assert set(record.probabilities) == set(ARMS)
        assert math.isclose(sum(record.probabilities.values()), 1.0, abs_tol=1e-9)
        assert record.probabilities[decision.arm] == decision.propensity
        assert record.probabilities_complete
    assert set(records[excluded.decision_id].probabilities) == {"a", "c"}


def test_default_rewards_fold_the_pending_features_once(
    client: BanditClient, store: redis.Redis
) -> None:
    create(client, reward_window=0.3, default_reward=0.0)
    made = [client.route("ctx", context={"seg": float(i % 3)}) for i in range(12)]
    time.sleep(1.5)  # past the deadline; the sweeper runs every 0.1 s
    expected = {arm: (0, np.zeros((DIM, DIM))) for arm in ARMS}
    for i, decision in enumerate(made):
        x = np.array(vector(float(i % 3), None))
        n, gram = expected[decision.arm]
        expected[decision.arm] = (n + 1, gram + np.outer(x, x))
    stored = arm_statistics(store, "ctx")
    for arm in ARMS:
        assert stored[arm][0] == expected[arm][0]
        assert np.array_equal(stored[arm][1], expected[arm][1])
        assert not stored[arm][2].any()  # b += 0 x
    assert store.hlen("br:{ctx}:features") == 0  # the pending features went with them
    # a late reward is ignored (the default rule), and changes nothing
    assert client.reward(made[0].decision_id, 1.0) == "LATE_IGNORED"


def test_logistic_ts_linearises_at_the_deciding_model(
    client: BanditClient, store: redis.Redis
) -> None:
    create(client, policy="logistic_ts")
    decision = client.route("ctx", context={"seg": 2.0}, attributes={"tier": "free"})
    assert client.reward(decision.decision_id, 1.0) == "APPLIED"
    x = np.array(vector(2.0, "free"))
    n, gram, b = arm_statistics(store, "ctx")[decision.arm]
    # first reward: theta = 0, so z = 0, p = 1/2, h = 1/4, target h z + r - p = 1/2
    assert n == 1.0
    assert np.array_equal(gram, 0.25 * np.outer(x, x))
    assert np.array_equal(b, 0.5 * x)


def test_bad_contextual_input_is_refused_and_writes_nothing(
    client: BanditClient, store: redis.Redis
) -> None:
    create(client)
    required = [*FEATURES, pb.ContextFeature(name="size", required=True)]
    client.create_experiment("req", ARMS, policy="lin_ucb", context_features=required)
    time.sleep(0.15)
    route = client.route
    for call, code, field in [
        (lambda: route("ctx", context={"seg": math.nan}), INVALID, "context[seg]"),
        (lambda: route("ctx", context={"seg": math.inf}), INVALID, "context[seg]"),
        (lambda: route("ctx", context={"seg": 1e300}), INVALID, "context[seg]"),
        (lambda: route("ctx", attributes={"tier": "x" * 65}), INVALID, "attributes[tier]"),
        (
            lambda: route("ctx", attributes={f"k{i}": "v" for i in range(65)}),
            INVALID,
            "attributes",
        ),
        (
            lambda: route("ctx", context={f"k{i}": 1.0 for i in range(65)}),
            INVALID,
            "context",
        ),
        (lambda: route("req", context={"seg": 1.0}), INVALID, "context[size]"),
        (
            lambda: client.create_experiment("bare", ARMS, policy="lin_ts"),
            INVALID,
            "experiment.context_features",
        ),
        (
            lambda: client.create_experiment(
                "wide",
                ARMS,
                policy="lin_ts",
                context_features=[pb.ContextFeature(name=f"f{i}") for i in range(64)],
            ),
            INVALID,
            "experiment.context_features",
        ),
    ]:
        expect_refused(store, call, code, field)
    # a value outside the declared ones is "other", never an error
    assert route("ctx", attributes={"tier": "gold"}).arm in ARMS


def test_changing_features_needs_a_reset_and_old_decisions_go_stale(
    client: BanditClient, store: redis.Redis
) -> None:
    create(client)
    old = client.route("ctx", context={"seg": 1.0})
    rewarded = client.route("ctx", context={"seg": 1.0})
    assert client.reward(rewarded.decision_id, 1.0) == "APPLIED"
    narrower = pb.Experiment(name="ctx", context_features=FEATURES[:1])
    mask = {"paths": ["context_features"]}

    def update(reset: bool) -> Any:
        return client.call_admin(
            "UpdateExperiment",
            admin_pb2.UpdateExperimentRequest(
                experiment=narrower, update_mask=mask, reset_statistics=reset
            ),
        )

    expect_refused(store, lambda: update(False), FAILED, "reset_statistics")
    before = store.hgetall("br:{ctx}:stats")
    assert update(True).experiment.context_features[0].name == "seg"
    after = store.hgetall("br:{ctx}:stats")
    assert after["_space"] != before["_space"]
    assert not [f for f in after if ":A:" in f or ":b:" in f]
    assert all(float(after[f"{arm}:n"]) == 0.0 for arm in ARMS)
    assert store.llen("br:{ctx}:snapshots") == 1
    time.sleep(0.15)
    # a decision made in the old feature space can no longer be learned from
    expect_refused(store, lambda: client.reward(old.decision_id, 1.0), NOT_FOUND, "decision_id")
    fresh = client.route("ctx", context={"seg": 1.0})
    assert client.reward(fresh.decision_id, 1.0) == "APPLIED"
    n, gram, _ = arm_statistics(store, "ctx")[fresh.arm]
    assert n == 1.0 and gram[0, 0] == 1.0 and gram[1, 1] == 0.25


@pytest.mark.parametrize(("floor", "holdout"), [(0.0, 0.0), (0.1, 0.2)])
def test_routes_draw_the_law_they_log_which_is_the_policys_for_the_stored_state(
    client: BanditClient, store: redis.Redis, floor: float, holdout: float
) -> None:
    """Train a little, then freeze the state (no more rewards): every Route at one feature
    vector logs the same law, which is the policy's exact law (vectorised path, from the
    statistics in Redis) with the floor and holdout mixed in (h / K + (1 - h)(f + (1 - K f)
    p)), and the arms routed follow it (chi-square, as the policy tests)."""
    create(
        client,
        exploration=pb.ExplorationControls(floor=floor),
        holdout=pb.Holdout(share=holdout),
    )
    rng = np.random.default_rng(11)
    for _ in range(60):
        seg = float(rng.integers(0, 3))
        decision = client.route("ctx", context={"seg": seg})
        client.reward(decision.decision_id, float(ARMS.index(decision.arm) == seg))
    time.sleep(0.2)  # every replica's cache has the final state
    x = vector(1.0, "premium")
    counts = dict.fromkeys(ARMS, 0)
    routed = 1500
    for _ in range(routed):
        counts[client.route("ctx", context={"seg": 1.0}, attributes={"tier": "premium"}).arm] += 1
    time.sleep(0.2)
    records = [r for r in client.export_decisions("ctx") if list(r.features) == x]
    assert len(records) == routed
    law = dict(records[0].probabilities)
    assert all(dict(r.probabilities) == law for r in records)
    raw = arm_statistics(store, "ctx")
    stats = ContextualStats(
        np.array([raw[a][0] for a in ARMS]),
        np.array([raw[a][1] for a in ARMS]),
        np.array([raw[a][2] for a in ARMS]),
    )
    policy = create_policy("lin_ts", {}, contextual=True).probabilities(stats, np.array(x))
    k = len(ARMS)
    exact = holdout / k + (1 - holdout) * (floor + (1 - k * floor) * policy)
    assert np.allclose([law[a] for a in ARMS], exact, atol=1e-6, rtol=0)  # quadrature error
    _check_counts(np.array([counts[a] for a in ARMS]), np.array([law[a] for a in ARMS]))


def test_plain_policies_log_features_and_attributes_without_learning_from_them(
    client: BanditClient, store: redis.Redis
) -> None:
    create(client, name="plain", policy="thompson")
    client.create_experiment("bare", ARMS)
    time.sleep(0.15)
    logged = client.route("plain", context={"seg": 2.0}, attributes={"tier": "free"})
    bare = client.route("bare", attributes={"device": "mobile"})
    assert logged.decision_id.startswith("2~") and bare.decision_id.startswith("2~")
    assert client.reward(logged.decision_id, 1.0) == "APPLIED"
    time.sleep(0.2)
    (record,) = client.export_decisions("plain")
    assert list(record.features) == vector(2.0, "free")
    assert dict(record.attributes) == {"tier": "free"}
    (record,) = client.export_decisions("bare")
    assert not record.features and dict(record.attributes) == {"device": "mobile"}
    assert not [f for f in store.hgetall("br:{plain}:stats") if ":A:" in f or ":b:" in f]


def test_a_late_reward_replaces_the_default_in_b_only(
    client: BanditClient, store: redis.Redis
) -> None:
    """With the APPLY rule a late reward replaces the default credited at the deadline: the
    decision's term in b becomes r x, and its count and its term in A stay."""
    create(client, reward_window=0.3, default_reward=0.0, late_rewards=pb.LATE_REWARD_RULE_APPLY)
    decision = client.route("ctx", context={"seg": 2.0}, attributes={"tier": "premium"})
    time.sleep(1.5)  # the sweeper credited the default
    x = np.array(vector(2.0, "premium"))
    n, gram, b = arm_statistics(store, "ctx")[decision.arm]
    assert (n, np.array_equal(gram, np.outer(x, x)), b.any()) == (1.0, True, False)
    assert client.reward(decision.decision_id, 1.0) == "LATE_APPLIED"
    assert client.reward(decision.decision_id, 1.0) == "DUPLICATE"
    n, gram, b = arm_statistics(store, "ctx")[decision.arm]
    assert n == 1.0
    assert np.array_equal(gram, np.outer(x, x))
    assert np.array_equal(b, x)


def test_a_discount_decays_every_arms_statistics_before_each_reward(
    client: BanditClient, store: redis.Redis
) -> None:
    create(client, params={"gamma": 0.5})
    rewarded = []
    for seg in (0.0, 2.0, 4.0):
        decision = client.route("ctx", context={"seg": seg})
        assert client.reward(decision.decision_id, 1.0) == "APPLIED"
        rewarded.append((decision.arm, np.array(vector(seg, None))))
    expected = {arm: (0.0, np.zeros((DIM, DIM)), np.zeros(DIM)) for arm in ARMS}
    for arm, x in rewarded:  # the policy's rule: every arm decays, then the reward is added
        expected = {a: (0.5 * n, 0.5 * g, 0.5 * b) for a, (n, g, b) in expected.items()}
        n, gram, b = expected[arm]
        expected[arm] = (n + 1, gram + np.outer(x, x), b + x)
    stored = arm_statistics(store, "ctx")
    for arm in ARMS:  # powers of two: exact
        assert stored[arm][0] == expected[arm][0]
        assert np.array_equal(stored[arm][1], expected[arm][1])
        assert np.array_equal(stored[arm][2], expected[arm][2])


def test_reports_read_the_arms_marginal_rewards(client: BanditClient) -> None:
    create(client)
    for seg in (0.0, 1.0, 2.0, 1.0):
        decision = client.route("ctx", context={"seg": seg})
        assert client.reward(decision.decision_id, 1.0) == "APPLIED"
    report = client.call_admin("GetReport", admin_pb2.GetReportRequest(experiment="ctx"))
    assert report.policy == "lin_ts"
    assert sorted(row.arm for row in report.arms) == list(ARMS)
    assert sum(row.rewards for row in report.arms) == 4
    assert math.isclose(sum(row.prob_best for row in report.arms), 1.0, abs_tol=1e-6)


def test_reports_give_coefficients_and_p_best_for_a_context(
    client: BanditClient, server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """Coefficients and P(best) equal the posterior computed from the clients' own record:
    theta = P^-1 b, P = I + A (lambda 1), interval theta +- 1.96 v sqrt((P^-1)_jj), and
    P(best) the live law for x (lin_ts: the same scalar normals)."""
    from bandit_router.cli import main as cli_main
    from policies.contextual_report import Z95

    create(client)
    expected = ContextualStats.zeros(len(ARMS), DIM)
    for seg, tier, reward in [(0.0, "free", 1.0), (2.0, "premium", 0.0), (1.0, None, 1.0)] * 3:
        attributes = {"tier": tier} if tier else {}
        decision = client.route("ctx", context={"seg": seg}, attributes=attributes)
        assert client.reward(decision.decision_id, reward) == "APPLIED"
        arm = ARMS.index(decision.arm)
        x = np.array(vector(seg, tier))
        expected.n[arm] += 1
        expected.gram[arm] += np.outer(x, x)
        expected.b[arm] += reward * x
    policy = create_policy("lin_ts", {}, contextual=True)
    v = policy.params["v"]
    covariance = np.linalg.inv(expected.gram + np.eye(DIM))
    theta = (covariance @ expected.b[..., None])[..., 0]
    request = admin_pb2.GetReportRequest(
        experiment="ctx", context={"seg": 1.0}, attributes={"tier": "premium"}
    )
    section = client.call_admin("GetReport", request).contextual
    assert list(section.columns) == ["intercept", "seg", "tier=free", "tier=premium", "tier=other"]
    for k, row in enumerate(section.arms):
        assert row.arm == ARMS[k]
        for j, c in enumerate(row.coefficients):
            half = Z95 * v * math.sqrt(covariance[k, j, j])
            assert c.estimate == pytest.approx(theta[k, j], abs=1e-9)
            assert c.ci_high - c.estimate == pytest.approx(half, abs=1e-9)
    asked = vector(1.0, "premium")
    assert list(section.features) == asked
    law = policy.probabilities_one(policy.prepare(expected), asked, [0, 1, 2])
    for k, score in enumerate(section.scores):
        assert score.mean == pytest.approx(float(theta[k] @ np.array(asked)), abs=1e-9)
        assert score.prob_best == pytest.approx(law[k], abs=1e-6)
    # bad input: INVALID_ARGUMENT naming the field
    for context, attributes, field in [
        ({"zzz": 1.0}, {}, "context[zzz]"),
        ({"seg": math.nan}, {}, "context[seg]"),
        ({}, {"colour": "red"}, "attributes[colour]"),
    ]:
        bad = admin_pb2.GetReportRequest(experiment="ctx", context=context, attributes=attributes)
        with pytest.raises(grpc.RpcError) as raised:
            client.call_admin("GetReport", bad)
        assert raised.value.code() == INVALID, raised.value.details()
        assert field in (raised.value.details() or "")
    argv = ["report", "ctx", "--target", server.target, "--context", "seg=1"]
    assert cli_main([*argv, "--attribute", "tier=premium"]) == 0
    out = capsys.readouterr().out
    assert "tier=premium" in out and "P(best)" in out
