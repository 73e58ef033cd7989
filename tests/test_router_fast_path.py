"""Route's plain fast path decides exactly what ``Router.choose`` + ``_issue`` would.

Two routers with identically seeded generators and identical cached states, one asked through
``route_plain`` and one through the general ``route``, must return the same arms, propensities,
reasons and signed fields, log the same rows and count the same decisions; and a state with
any rule in force (pin, pause, holdout, burn-in, sticky) must never take the fast path.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bandit_router.model.experiments import Arm, ArmState, Experiment, Pin, PolicySpec
from bandit_router.route.cache import CachedExperiment, ExperimentCache
from bandit_router.route.router import Router
from bandit_router.route.tokens import DecisionSigner, parse_unverified
from bandit_router.store.redis_store import ExperimentState, PendingDecision
from bandit_router.telemetry.metrics import Metrics

SIGNER = DecisionSigner(b"s" * 32)


class RecordingLog:
    """Stands in for DecisionRecorder: keeps what Route hands over."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def record(
        self,
        experiment: str,
        incarnation: str,
        arm: str,
        row: tuple[Any, ...],
        pending: PendingDecision | None,
    ) -> None:
        self.rows.append((experiment, incarnation, arm, row[1], row[2], dict(row[3]), pending))


def make_router(experiment: Experiment, seed: int) -> tuple[Router, RecordingLog, Metrics]:
    stats = {}
    for index, arm in enumerate(experiment.arm_names):
        stats[f"{arm}:n"] = str(10 + 3 * index)
        stats[f"{arm}:sum"] = str(4 + index)
        stats[f"{arm}:sum_sq"] = str(4 + index)
        stats[f"{arm}:decisions"] = str(50)
    cache = ExperimentCache.__new__(ExperimentCache)
    cache._entries = {experiment.name: CachedExperiment.build(ExperimentState(experiment, stats))}
    log = RecordingLog()
    metrics = Metrics(CollectorRegistry())
    router = Router(cache, SIGNER, log, rng=random.Random(seed), metrics=metrics)  # type: ignore[arg-type]
    return router, log, metrics


def experiment_with(**changes: Any) -> Experiment:
    base = Experiment(
        name="fast",
        arms=tuple(Arm(a) for a in ("a", "b", "c", "d")),
        policy=PolicySpec("thompson", {}),
        reward_window=60.0,
        default_reward=0.0,
        incarnation="inc1",
    )
    return base.with_changes(**changes).validated()


def signed_fields(decision_id: str) -> tuple[Any, ...]:
    SIGNER.verify(decision_id)
    decision = parse_unverified(decision_id)
    return decision._replace(
        nonce="", issued_ms=0, deadline_ms=decision.deadline_ms - decision.issued_ms
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"exploration_floor": 0.05},
        {"default_reward": None},
        {"policy": PolicySpec("epsilon_greedy", {"epsilon": 0.2})},
        {"policy": PolicySpec("gaussian_thompson", {})},
        {"burn_in": 10},  # every arm already has 50 decisions: burn-in is over
        {"arms": (Arm("a"), Arm("b", state=ArmState.DISABLED), Arm("c"), Arm("d"))},
        {"max_share": {"d": 0.2, "c": 0.3}, "exploration_floor": 0.05},
    ],
    ids=[
        "thompson",
        "floor",
        "no-default",
        "epsilon",
        "gaussian",
        "burn-in-over",
        "disabled",
        "capped",
    ],
)
def test_fast_path_decides_exactly_as_the_general_path(
    changes: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bandit_router.route.router.time.time", lambda: 1_700_000_000.5)
    monkeypatch.setattr(
        "bandit_router.route.router._now", lambda: 1_700_000_000.5
    )  # the fast path's
    experiment = experiment_with(**changes)
    fast, fast_log, fast_metrics = make_router(experiment, seed=7)
    slow, slow_log, slow_metrics = make_router(experiment, seed=7)
    fast_decisions = [fast.route_plain("fast", "u1", (), {}) for _ in range(3000)]
    slow_decisions = [asyncio.run(slow.route("fast", "u1")) for _ in range(3000)]
    assert all(d is not None for d in fast_decisions)
    for got, want in zip(fast_decisions, slow_decisions, strict=True):
        assert got is not None
        assert (got.arm, got.propensity, got.reason, got.policy, got.state_version) == (
            want.arm,
            want.propensity,
            want.reason,
            want.policy,
            want.state_version,
        )
        assert got.reward_deadline_ms == want.reward_deadline_ms
        assert signed_fields(got.decision_id) == signed_fields(want.decision_id)

    def comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [(*row[:6], row[6] is not None and (row[6].arm, row[6].deadline_ms)) for row in rows]

    assert comparable(fast_log.rows) == comparable(slow_log.rows)
    assert len({d.arm for d in fast_decisions if d is not None}) > 1  # a real draw, not a pin
    fast_metrics.flush()
    slow_metrics.flush()
    assert fast_metrics.registry.get_sample_value(
        "bandit_router_decisions_total", {"experiment": "fast", "arm": "a", "reason": "exploit"}
    ) == slow_metrics.registry.get_sample_value(
        "bandit_router_decisions_total", {"experiment": "fast", "arm": "a", "reason": "exploit"}
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"paused": True},
        {"pin": Pin(arm="b")},
        {"pin": Pin(units={"u1": "c"})},
        {"holdout_share": 0.1},
        {"sticky": True},
        {"burn_in": 100},
    ],
    ids=["paused", "pinned", "unit-pin", "holdout", "sticky", "in-burn-in"],
)
def test_states_with_a_rule_in_force_never_take_the_fast_path(changes: Mapping[str, Any]) -> None:
    router, _, _ = make_router(experiment_with(**changes), seed=1)
    assert router.route_plain("fast", "u1", (), {}) is None


def test_requests_with_exclusions_context_or_a_long_unit_id_take_the_general_path() -> None:
    router, _, _ = make_router(experiment_with(), seed=1)
    assert router.route_plain("fast", "", ("a",), {}) is None
    assert router.route_plain("fast", "", (), {"x": 1.0}) is None
    assert router.route_plain("fast", "u" * 1000, (), {}) is None
    assert router.route_plain("missing", "", (), {}) is None
    assert router.route_plain("fast", "", (), {}) is not None
