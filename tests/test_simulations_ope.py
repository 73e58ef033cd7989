"""Off-policy estimators on synthetic logs from a known environment and logging policy.

Coverage: if a 95 % interval is calibrated, the number of seeds (out of 100) whose interval
covers the true value is Binomial(100, 0.95); P(count <= 89) = 1.1 %, so requiring >= 90
fails a calibrated estimator rarely, and an estimator whose intervals are too narrow or
biased (true coverage <= 85 %: P(count >= 90) <= 11 %) almost always.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies import create_policy
from simulations.environments import Environment
from simulations.logs import LoggedData
from simulations.ope import diagnose_weights, doubly_robust, ips, snips
from simulations.replay import Target, evaluate, replay, target_probabilities
from simulations.runner import simulate

MEANS = np.array([0.3, 0.5, 0.6])
LOGGING = np.array([0.5, 0.3, 0.2])
TARGET = np.array([0.1, 0.2, 0.7])
SEEDS = 100


def synthetic_log(n: int, seed: int, logging: np.ndarray = LOGGING) -> LoggedData:
    """Bernoulli(MEANS) rewards for arms drawn from a fixed logging distribution."""
    rng = np.random.default_rng(seed)
    arms = rng.choice(len(MEANS), size=n, p=logging)
    rewards = (rng.random(n) < MEANS[arms]).astype(np.float64)
    return LoggedData(
        arm_names=("a", "b", "c"),
        arms=arms.astype(np.int64),
        rewards=rewards,
        propensities=logging[arms],
        contexts=np.zeros((n, 0)),
        context_names=(),
        skipped=0,
    )


@pytest.mark.parametrize("estimator", [ips, snips, doubly_robust])
def test_intervals_cover_the_true_value(estimator: object) -> None:
    truth = float(TARGET @ MEANS)
    covered = 0
    errors = []
    for seed in range(SEEDS):
        data = synthetic_log(2000, seed)
        target = np.broadcast_to(TARGET, (data.size, 3))
        estimate = estimator(data.arms, data.rewards, data.propensities, target)  # type: ignore[operator]
        covered += estimate.covers(truth)
        errors.append(estimate.value - truth)
    assert covered >= 90, covered
    # Unbiased (SNIPS: bias O(1/n)): the mean error over 100 seeds is within 3 standard
    # errors of zero.
    errs = np.asarray(errors)
    assert abs(errs.mean()) < 3 * errs.std(ddof=1) / math.sqrt(SEEDS)


def test_target_kinds_probabilities() -> None:
    data = synthetic_log(50, 1)
    assert np.array_equal(target_probabilities(Target.fixed_arm("c"), data)[:, 2], np.ones(50))
    assert target_probabilities(Target.uniform(), data) == pytest.approx(np.full((50, 3), 1 / 3))
    greedy = create_policy("epsilon_greedy", {"epsilon": 0.0})
    probs = target_probabilities(Target.serving(greedy), data)
    assert probs.sum(axis=1) == pytest.approx(np.ones(50))
    # After many decisions the greedy policy follows the empirical best arm of the log so far.
    counts = np.bincount(data.arms[:-1], minlength=3)
    sums = np.bincount(data.arms[:-1], weights=data.rewards[:-1], minlength=3)
    empirical = sums / np.maximum(counts, 1)
    assert (empirical == empirical.max()).sum() == 1  # seed 1: no tie, so greedy is determined
    assert probs[-1, int(np.argmax(empirical))] == 1.0


def test_extreme_weights_warn() -> None:
    logging = np.array([0.998, 0.001, 0.001])
    data = synthetic_log(5000, 2, logging)
    target = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (data.size, 3))
    diagnostics = diagnose_weights(data.arms, data.propensities, target)
    # Weight 1000 on ~5 decisions: ESS = (sum w)^2 / sum w^2 = k^2 w^2 / (k w^2) = k.
    k = int((data.arms == 2).sum())
    assert diagnostics.effective_sample_size == pytest.approx(k)
    assert any("effective sample size" in w for w in diagnostics.warnings)
    assert any("extreme importance weight" in w for w in diagnostics.warnings)
    calm = diagnose_weights(data.arms, data.propensities, np.broadcast_to(logging, (data.size, 3)))
    assert calm.warnings == () and calm.effective_sample_size == pytest.approx(data.size)


def test_replay_of_fixed_arm_is_that_arms_mean() -> None:
    data = synthetic_log(6000, 3, np.full(3, 1 / 3))
    result = replay(Target.fixed_arm("b"), data, seed=0)
    assert result.uniform_log
    assert result.estimate.covers(float(MEANS[1]))


@pytest.mark.slow
def test_replay_matches_on_policy_simulation() -> None:
    """Li et al. 2011: on a uniformly random log, replaying a policy over L decisions is an
    on-policy run of about L/K steps. Compare Thompson sampling's replayed mean reward with its
    simulated mean reward over the same number of steps; tolerance z = 3 standard errors of the
    difference (replay SE from its interval, simulation SE over runs)."""
    data = synthetic_log(15000, 4, np.full(3, 1 / 3))
    replayed = replay(Target.serving(create_policy("thompson", {})), data, seed=1, replays=100)
    horizon = round(replayed.matched)
    runs = 200
    sim = simulate(
        create_policy("thompson", {}),
        Environment.bernoulli(MEANS.tolist()),
        horizon=horizon,
        runs=runs,
        seed=2,
        checkpoints=2,
    )
    per_step_reward = MEANS.max() - sim.regret[:, -1] / horizon
    sim_mean = float(per_step_reward.mean())
    sim_se = float(per_step_reward.std(ddof=1)) / math.sqrt(runs)
    replay_se = replayed.estimate.half_width / 1.96
    assert abs(replayed.estimate.value - sim_mean) < 3 * math.hypot(replay_se, sim_se)
    # And the policy did learn: a uniform policy would earn mean(MEANS) = 0.467.
    assert replayed.estimate.value > MEANS.mean() + 3 * replay_se


def test_evaluate_warns_when_replay_log_is_not_uniform() -> None:
    data = synthetic_log(500, 5)
    evaluation = evaluate(Target.fixed_arm("a"), data)
    assert [e.method for e in evaluation.estimates] == ["replay", "ips", "snips", "dr"]
    assert any("uniformly random" in w for w in evaluation.warnings)
