"""The promotion rules without a server (``bandit_router.analysis.promotion``).

* A configuration's law is the router's own (``CachedExperiment.decision_law``) for the same
  state: floor, burn-in, holdout with and without a control arm, a disabled arm.
* Changes are classified as the docs say: evaluated, not evaluable, incompatible.
* On a synthetic log (a known law mu over Bernoulli arms), pinned decisions are left out of
  both estimates, too many of them refuse, and a candidate equal in law to the live
  configuration is refused whatever the noise (its lower bound is below its own estimate).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from bandit_router.analysis import promotion
from bandit_router.model.experiments import Arm, ArmState, Experiment, Pin, PolicySpec
from bandit_router.route.cache import CachedExperiment
from policies import ScalarStats
from simulations.logs import DecisionRecord, LoggedData

ARMS = ("a", "b", "c")
MEANS = {"a": 0.2, "b": 0.5, "c": 0.8}
STATS = ScalarStats((30.0, 40.0, 50.0), (6.0, 20.0, 40.0), (6.0, 20.0, 40.0))


def experiment(**fields: object) -> Experiment:
    base = Experiment(
        "exp", tuple(Arm(a) for a in ARMS), PolicySpec("epsilon_greedy", {"epsilon": 0.3})
    )
    return dataclasses.replace(base, **fields).validated()  # type: ignore[arg-type]


CONFIGURATIONS = {
    "policy only": experiment(),
    "thompson, floor, holdout to a control arm": experiment(
        policy=PolicySpec("thompson", {}),
        exploration_floor=0.05,
        holdout_share=0.2,
        holdout_control_arm="a",
    ),
    "ucb1, holdout uniform, b disabled": experiment(
        policy=PolicySpec("ucb1", {}),
        holdout_share=0.1,
        arms=(Arm("a"), Arm("b", ArmState.DISABLED), Arm("c")),
    ),
    "burn-in in force": experiment(burn_in=100, holdout_share=0.3),
    "capped, ucb1, floor, holdout": experiment(
        policy=PolicySpec("ucb1", {}),
        exploration_floor=0.05,
        holdout_share=0.1,
        max_share={"c": 0.3, "b": 0.4},
    ),
    "capped in burn-in": experiment(burn_in=100, max_share={"c": 0.2}),
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_configuration_law_is_the_routers_law(name: str) -> None:
    config = CONFIGURATIONS[name]
    decisions = (30.0, 40.0, 50.0)
    entry = CachedExperiment(
        experiment=config,
        policy=config.policy.build(),
        stats=STATS,
        decisions=decisions,
        state_version=1,
        fetched_at=0.0,
        arm_index={a: i for i, a in enumerate(ARMS)},
        active=tuple(i for i, arm in enumerate(config.arms) if arm.active),
        reward_bounds=config.reward_bounds(),
    )
    burning = min(decisions[i] for i in entry.active) < config.burn_in
    routed = entry.decision_law(entry.active, burning)
    law = promotion.configuration_law(config, ARMS, STATS.to_stats(), np.asarray(decisions))
    assert law == pytest.approx([routed.get(a, 0.0) for a in ARMS], abs=1e-12)
    assert law.sum() == pytest.approx(1.0, abs=1e-12)


def test_changes_are_classified() -> None:
    live = experiment()
    found = promotion.changes(live, experiment(exploration_floor=0.1, reward_window=60.0))
    assert found.evaluated == ("exploration_floor",)
    assert found.unevaluated == ("reward_window",)
    assert found.paths == ("exploration", "reward_window") and not found.incompatible
    disabled = experiment(arms=(Arm("a"), Arm("b", ArmState.DISABLED), Arm("c")))
    assert promotion.changes(live, disabled).paths == ("arms",)
    same = promotion.changes(
        live, experiment(policy=PolicySpec("epsilon_greedy", {"epsilon": 0.3, "gamma": 1.0}))
    )
    assert same.incompatible == ("the candidate is the live configuration: nothing to promote",)
    more = promotion.changes(live, experiment(arms=(*live.arms, Arm("d"))))
    assert more.incompatible[0].startswith("the candidate changes the arms (adds d)")
    gaussian = experiment(policy=PolicySpec("gaussian_thompson", {}))
    to_beta = promotion.changes(gaussian, experiment(policy=PolicySpec("thompson", {})))
    assert "outside the [0, 1] policy 'thompson' accepts" in to_beta.incompatible[0]


def synthetic_log(n: int, pinned_share: float, seed: int) -> LoggedData:
    """Epsilon-greedy 0.3 with c greedy (law 0.1, 0.1, 0.8), a share pinned to a."""
    rng = random.Random(seed)
    law = {"a": 0.1, "b": 0.1, "c": 0.8}
    records = []
    for i in range(n):
        pinned = rng.random() < pinned_share
        arm = "a" if pinned else rng.choices(ARMS, weights=[law[a] for a in ARMS])[0]
        probabilities = {"a": 1.0} if pinned else law
        records.append(
            DecisionRecord(
                decision_id=str(i),
                experiment="exp",
                arm=arm,
                propensity=probabilities[arm],
                reason="PINNED" if pinned else "EXPLOIT",
                reward=float(rng.random() < MEANS[arm]),
                probabilities=probabilities,
                probabilities_complete=True,
            )
        )
    return LoggedData.from_records(records, list(ARMS))


def assess(candidate: Experiment, data: LoggedData) -> promotion.Assessment:
    live = experiment()
    return promotion.assess(live, candidate, STATS.to_stats(), np.zeros(3), data)


def test_pinned_decisions_are_left_out_of_both_estimates() -> None:
    data = synthetic_log(4000, pinned_share=0.25, seed=3)
    result = assess(experiment(policy=PolicySpec("epsilon_greedy", {"epsilon": 0.03})), data)
    pinned = sum(1 for reason in data.reasons if reason == "PINNED")
    assert result.scope == data.size - pinned
    assert result.current is not None and result.candidate is not None
    assert {e.n for e in result.current.estimates} == {result.scope}
    assert {e.n for e in result.candidate.estimates} == {result.scope}
    assert any("no support" in warning for warning in result.warnings)
    assert result.approved, result.refusals


def test_mostly_pinned_log_is_refused() -> None:
    data = synthetic_log(3000, pinned_share=0.6, seed=4)
    result = assess(experiment(policy=PolicySpec("epsilon_greedy", {"epsilon": 0.03})), data)
    assert not result.approved
    assert "lacks support on too much of the log" in result.refusals[0]


@pytest.mark.parametrize("seed", range(5))
def test_a_candidate_with_the_live_law_is_never_promoted(seed: int) -> None:
    data = synthetic_log(2000, pinned_share=0.0, seed=seed)
    result = assess(experiment(description="the same law"), data)
    assert result.candidate_law == result.current_law
    candidate, current = result.estimate("candidate"), result.estimate("current")
    assert candidate is not None and current is not None
    assert result.refusals == (
        f"the candidate's lower 95% bound {candidate.ci_low:.4f} does not beat the current "
        f"configuration's estimate {current.value:.4f}",
    )


def test_pinned_live_experiment_is_compared_as_unpinned() -> None:
    live = dataclasses.replace(experiment(), pin=Pin("a"))
    data = synthetic_log(1500, pinned_share=0.0, seed=5)
    candidate = experiment(policy=PolicySpec("epsilon_greedy", {"epsilon": 0.03}))
    result = promotion.assess(live, candidate, STATS.to_stats(), np.zeros(3), data)
    assert any("pinned or paused" in warning for warning in result.warnings)
    assert result.current_law == pytest.approx((0.1, 0.1, 0.8))


@pytest.mark.parametrize(
    "fields",
    [
        {"exploration_floor": 0.05, "holdout_share": 0.2, "holdout_control_arm": "a"},
        {"holdout_share": 0.1, "arms": (Arm("a"), Arm("b", ArmState.DISABLED), Arm("c"))},
        {"burn_in": 100, "holdout_share": 0.3},
    ],
)
def test_contextual_configuration_law_is_the_routers_law(fields: dict[str, object]) -> None:
    """Per feature vector: the live path's exact law (``probabilities_one``), floored and
    mixed by ``whole_law`` exactly as Route mixes it."""
    from bandit_router.model.experiments import ContextFeature
    from bandit_router.route.cache import whole_law
    from policies.contextual import ArmIncrement, ContextualStats
    from policies.controls import floor_probabilities_one

    config = experiment(
        policy=PolicySpec("lin_ts", {"v": 1.0}),
        context_features=(ContextFeature("x1"), ContextFeature("x2")),
        **fields,
    )
    rng = np.random.default_rng(5)
    stats = ContextualStats.zeros(3, 3)
    for _ in range(60):
        x = np.concatenate([[1.0], rng.standard_normal(2)])
        stats = stats.plus(
            ArmIncrement(int(rng.integers(3)), 1.0, np.outer(x, x), rng.random() * x)
        )
    decisions = np.asarray([30.0, 40.0, 50.0])
    vectors = np.column_stack([np.ones(4), rng.standard_normal((4, 2))])
    laws = promotion.contextual_configuration_laws(config, ARMS, stats, vectors, decisions)
    policy = config.policy.build_contextual()
    model = policy.prepare(stats)
    eligible = tuple(i for i, arm in enumerate(config.arms) if arm.active)
    burning = min(decisions[i] for i in eligible) < config.burn_in
    index = {a: i for i, a in enumerate(ARMS)}
    for x, law in zip(vectors, laws, strict=True):
        floored = floor_probabilities_one(
            policy.probabilities_one(model, x.tolist(), eligible),
            eligible,
            config.exploration_floor,
        )
        routed = whole_law(config, index, eligible, burning, {i: floored[i] for i in eligible})
        assert law == pytest.approx([routed.get(a, 0.0) for a in ARMS], abs=1e-9)


def test_contextual_to_plain_resets_and_prices_the_plain_candidate_after_the_first_half() -> None:
    """The reset zeroes the statistics: the plain candidate is priced at its priors plus the
    rewards of the log's first half, and both configurations are scored on the second."""
    from bandit_router.model.experiments import ContextFeature
    from policies.contextual import ContextualStats

    live = experiment(policy=PolicySpec("lin_ucb", {}), context_features=(ContextFeature("x1"),))
    candidate = experiment(policy=PolicySpec("epsilon_greedy", {"epsilon": 0.1}))
    data = synthetic_log(2400, pinned_share=0.0, seed=8)
    result = promotion.assess(
        live,
        candidate,
        STATS.to_stats(),
        np.zeros(3),
        data,
        contextual=ContextualStats.zeros(3, 2),
    )
    assert result.reset and result.fitted_on == 1200 and result.scope == 1200
    head = data.arms[:1200]
    means = [float(data.rewards[:1200][head == k].mean()) for k in range(3)]
    greedy = int(np.argmax(means))
    expected = [0.1 / 3 + (0.9 if k == greedy else 0.0) for k in range(3)]
    assert result.candidate_law == pytest.approx(expected, abs=1e-12)
    assert any("applying resets the statistics" in warning for warning in result.warnings)
