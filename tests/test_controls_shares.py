"""Exploration floor, burn-in, holdout, pause and reset: traffic shares, propensities, learning.

A real server (seeded router RNG) on a real redis-server, over a real gRPC channel. The
experiments use warm-start priors that make arm ``a`` the certain favourite (Thompson gives
``b`` and ``c`` a probability of ~1e-100), so every share ``b`` and ``c`` get is the control's
doing and the expected share follows from the control's definition alone:

* floor f over K eligible arms: P(arm) = f + (1 - K f) p(arm), with p the policy's law;
* burn-in: P(arm) = 1 / K while some arm has fewer than N decisions;
* holdout share h: P(HOLDOUT) = h, and within holdout P(arm) = 1 / K (or 1 for a control arm).

Observed counts are checked against Binomial(n, P) with the band n P +- z sqrt(n P (1 - P)),
z = 4 (see ``test_controls_helpers.binomial_band``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from bandit_router.client import BanditClient
from bandit_router.v1 import admin_pb2, experiment_pb2

from .servers import RedisServer
from .test_controls_helpers import (
    SKEWED,
    SeededServer,
    assert_binomial,
    create,
    statistics,
    stop_thread,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_url: str) -> Iterator[BanditClient]:
    server = SeededServer(20240611, redis_url=redis_url, refresh_interval=0.05).start()
    try:
        with BanditClient(server.target, timeout=5, max_attempts=1) as c:
            yield c
    finally:
        stop_thread(server)


def test_exploration_floor_shares_and_propensities(client: BanditClient) -> None:
    floor, trials = 0.1, 3000
    create(client, "floor", SKEWED, exploration=experiment_pb2.ExplorationControls(floor=floor))
    decisions = [client.route("floor") for _ in range(trials)]
    propensities: dict[str, set[float]] = {}
    for d in decisions:
        propensities.setdefault(d.arm, set()).add(d.propensity)
        assert d.propensity >= floor - 1e-12
    # No rewards: the state does not change, so each arm has one propensity throughout.
    assert all(len(values) == 1 for values in propensities.values()), propensities
    expected = {arm: values.pop() for arm, values in propensities.items()}
    assert set(expected) == {"a", "b", "c"}
    # p(b) ~ 0, so P(b) = f + (1 - 3 f) * 0 = f exactly; and the law sums to one.
    assert expected["b"] == pytest.approx(floor, abs=1e-9)
    assert expected["c"] == pytest.approx(floor, abs=1e-9)
    assert sum(expected.values()) == pytest.approx(1.0, abs=1e-9)
    counts = Counter(d.arm for d in decisions)
    for arm, p in expected.items():
        assert_binomial(counts[arm], trials, p, f"floor: arm {arm}")
    # The uniform part is logged as exploration: b and c only ever come from it.
    assert {d.reason for d in decisions if d.arm != "a"} == {"EXPLORE"}


def test_burn_in_is_uniform_until_every_arm_has_n_decisions(client: BanditClient) -> None:
    burn_in, k = 250, 3
    create(client, "burn", SKEWED, exploration=experiment_pb2.ExplorationControls(burn_in=burn_in))
    decisions = []
    for _ in range(4000):
        decision = client.route("burn")
        if decision.reason != "BURN_IN":
            break
        decisions.append(decision)
    else:
        pytest.fail("burn-in never ended")
    assert {d.propensity for d in decisions} == {1.0 / k}
    counts = Counter(d.arm for d in decisions)
    for arm in "abc":
        assert_binomial(counts[arm], len(decisions), 1.0 / k, f"burn-in: arm {arm}")
    # It ended because every arm reached N decisions, not earlier.
    assert all(d >= burn_in for _, _, d in statistics(client, "burn").values())
    after = [client.route("burn") for _ in range(200)]
    assert all(d.reason in {"EXPLOIT", "EXPLORE"} for d in after)
    assert Counter(d.arm for d in after)["a"] == 200


def test_holdout_share_is_uniform_and_never_learned(client: BanditClient) -> None:
    share, trials, k = 0.25, 2400, 3
    create(client, "hold", SKEWED, holdout=experiment_pb2.Holdout(share=share))
    before = statistics(client, "hold")
    decisions = [client.route("hold") for _ in range(trials)]
    holdout = [d for d in decisions if d.reason == "HOLDOUT"]
    assert_binomial(len(holdout), trials, share, "holdout share")
    assert {d.propensity for d in holdout} == {1.0 / k}
    counts = Counter(d.arm for d in holdout)
    for arm in "abc":
        assert_binomial(counts[arm], len(holdout), 1.0 / k, f"holdout: arm {arm}")
    bandit = [d for d in decisions if d.reason != "HOLDOUT"]
    assert {d.arm for d in bandit} == {"a"}

    # Every decision gets reward 1: holdout ones are recorded, not learned.
    outcomes = Counter(client.reward(d.decision_id, 1.0) for d in decisions)
    assert outcomes == Counter({"RECORDED": len(holdout), "APPLIED": len(bandit)})
    after = statistics(client, "hold")
    for arm in "abc":
        learned = sum(1 for d in bandit if d.arm == arm)
        assert after[arm][0] == before[arm][0] + learned, arm
        assert after[arm][1] == before[arm][1] + learned, arm


def test_holdout_with_a_control_arm(client: BanditClient) -> None:
    share, trials = 0.3, 1000
    create(client, "holdc", SKEWED, holdout=experiment_pb2.Holdout(share=share, control_arm="c"))
    decisions = [client.route("holdc") for _ in range(trials)]
    holdout = [d for d in decisions if d.reason == "HOLDOUT"]
    assert_binomial(len(holdout), trials, share, "holdout share (control arm)")
    assert {(d.arm, d.propensity) for d in holdout} == {("c", 1.0)}
    assert {client.reward(d.decision_id, 1.0) for d in holdout} == {"RECORDED"}
    assert statistics(client, "holdc")["c"][:2] == (1000.0, 100.0)


def test_pause_routes_to_the_configured_arm_without_learning(client: BanditClient) -> None:
    create(client, "pause", SKEWED, pause_arm="c")
    before = statistics(client, "pause")
    client.call_admin("Pause", admin_pb2.PauseRequest(experiment="pause", reason="bad data"))
    decisions = [client.route("pause") for _ in range(50)]
    # The change notice makes the pause visible to this server almost at once; skip the
    # (rare) decisions made before its cache switched.
    paused = [d for d in decisions if d.reason == "PAUSED"]
    assert len(paused) >= 40
    assert {(d.arm, d.propensity) for d in paused} == {("c", 1.0)}
    assert {client.reward(d.decision_id, 1.0) for d in paused} == {"RECORDED"}
    assert {arm: s[:2] for arm, s in statistics(client, "pause").items()} == {
        arm: s[:2] for arm, s in before.items()
    }

    # An arm given with pause overrides the configured one; resume returns to the policy.
    # Each change reaches this server's cache by its change notice, or at the latest by the
    # next refresh: wait for it (the guarantee is within a second), then every Route obeys.
    client.call_admin("Pause", admin_pb2.PauseRequest(experiment="pause", arm="b"))
    until_within_a_second(lambda: client.route("pause").arm == "b")
    assert {client.route("pause").arm for _ in range(20)} == {"b"}
    client.call_admin("Resume", admin_pb2.ResumeRequest(experiment="pause", reason="fixed"))
    until_within_a_second(lambda: client.route("pause").reason != "PAUSED")
    assert {client.route("pause").reason for _ in range(20)} <= {"EXPLOIT", "EXPLORE"}


def until_within_a_second(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 1.0
    while not condition():
        assert time.monotonic() < deadline, "the change did not reach the server in a second"
        time.sleep(0.01)


def test_reset_returns_to_the_prior_and_keeps_a_snapshot(
    client: BanditClient, redis_server: RedisServer
) -> None:
    create(client, "reset", [("a", 10.0, 5.0), "b"])
    decisions = [client.route("reset") for _ in range(60)]
    for d in decisions[:50]:
        assert client.reward(d.decision_id, 1.0) == "APPLIED"
    old = statistics(client, "reset")
    assert sum(n for n, _, _ in old.values()) == 10 + 50

    snapshot = client.call_admin(
        "Reset", admin_pb2.ResetRequest(experiment="reset", reason="new season")
    ).snapshot
    fresh = statistics(client, "reset")
    assert fresh == {"a": (10.0, 5.0, 0), "b": (0.0, 0.0, 0)}
    listed = client.call_admin(
        "ListSnapshots", admin_pb2.ListSnapshotsRequest(experiment="reset")
    ).snapshots
    assert [s.id for s in listed] == [snapshot.id]
    assert listed[0].reason == "new season"
    assert listed[0].principal == "anonymous"  # auth is off on this server
    assert {s.arm: (s.n, s.sum, s.decisions) for s in listed[0].statistics} == old

    # Decisions made before the reset can still be rewarded; they land on the fresh state.
    late = decisions[50:]
    assert {client.reward(d.decision_id, 1.0) for d in late} == {"APPLIED"}
    final = statistics(client, "reset")
    for arm, (n, total, _) in fresh.items():
        gained = sum(1 for d in late if d.arm == arm)
        assert final[arm][:2] == (n + gained, total + gained)
