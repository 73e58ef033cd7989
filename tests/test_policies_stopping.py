"""The stopping rule: valid under continuous monitoring, fast where it must be.

Every figure is from seeded simulations through the serving policy code; every tolerance is a
binomial bound on the simulated share, computed here from the counts (Clopper-Pearson), so
a seed that happened to pass a weak rule cannot: each check would fail for a rule whose true
rate were on the wrong side of the target by more than the bound.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from policies import create_policy
from policies.base import PolicyConfigError, Stats
from policies.stopping import StoppingRule, Verdict, fixed_horizon_pairs
from simulations.identification import run_identification

#: Chance that a check below fails although the rule meets its target (per check).
FALSE_FAILURE = 1e-3


def upper_bound(successes: int, trials: int) -> float:
    """One-sided Clopper-Pearson upper bound at confidence 1 - FALSE_FAILURE."""
    if successes == trials:
        return 1.0
    return float(scipy_stats.beta.ppf(1 - FALSE_FAILURE, successes + 1, trials - successes))


def lower_bound(successes: int, trials: int) -> float:
    if successes == 0:
        return 0.0
    return float(scipy_stats.beta.ppf(FALSE_FAILURE, successes, trials - successes + 1))


class PeekingZTest:
    """The rule an experimenter without this feature uses: a 95 % fixed-horizon z-test,
    looked at after every reward. Invalid by construction; here to show the check can fail."""

    def verdict(self, stats: Stats) -> Verdict:
        n = np.maximum(stats.n, 1.0)
        means = stats.total / n
        se = np.sqrt(0.25 / n)
        z = (means[..., 0] - means[..., 1]) / np.hypot(se[..., 0], se[..., 1])
        winner = np.where(z > 1.96, 0, np.where(z < -1.96, 1, -1))
        winner = np.where((stats.n >= 100).all(-1), winner, -1).astype(np.int64)
        return Verdict(winner=winner, means=means, lower=means, upper=means)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"delta": 0.0}, "stopping.delta"),
        ({"delta": 1.0}, "stopping.delta"),
        ({"epsilon": -0.1}, "stopping.epsilon"),
        ({"epsilon": float("nan")}, "stopping.epsilon"),
        ({"min_samples": 0}, "stopping.min_samples"),
        ({"reward_min": 0.0, "reward_max": float("inf")}, "stopping"),
        ({"reward_min": 1.0, "reward_max": 1.0}, "stopping"),
    ],
)
def test_bad_settings_name_their_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        StoppingRule(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_no_verdict_before_every_arm_has_its_minimum() -> None:
    rule = StoppingRule(min_samples=100)
    clear = Stats(np.array([5000.0, 99.0]), np.array([5000.0, 0.0]), np.array([5000.0, 0.0]))
    assert rule.verdict(clear).winner == -1
    enough = Stats(np.array([5000.0, 100.0]), np.array([5000.0, 0.0]), np.array([5000.0, 0.0]))
    assert rule.verdict(enough).winner == 0


def test_disabled_arms_do_not_block_or_win() -> None:
    rule = StoppingRule(min_samples=10)
    stats = Stats(np.array([400.0, 400.0, 0.0]), np.array([300.0, 100.0, 0.0]), np.zeros(3))
    assert rule.verdict(stats).winner == -1  # the unplayed third arm still needs its minimum
    assert rule.verdict(stats, np.array([True, True, False])).winner == 0


def test_bounds_are_clipped_to_the_reward_range_and_shrink_with_data() -> None:
    rule = StoppingRule(reward_min=0.0, reward_max=1.0)
    small = rule.verdict(Stats(np.array([10.0, 10.0]), np.array([5.0, 5.0]), np.zeros(2)))
    large = rule.verdict(Stats(np.array([1e4, 1e4]), np.array([5e3, 5e3]), np.zeros(2)))
    assert (small.lower >= 0).all() and (small.upper <= 1).all()
    assert (large.upper - large.lower < small.upper - small.lower).all()


def test_a_over_a_experiments_monitored_after_every_reward_rarely_declare() -> None:
    """1,000 A/A experiments of up to 4,000 pairs, checked after every reward: the share that
    name a winner is at most delta (a winner between equal arms is a false discovery)."""
    rule = StoppingRule(delta=0.05)
    result = run_identification(
        create_policy("top_two_thompson", {}),
        rule,
        [0.5, 0.5],
        1000,
        4000,
        np.random.default_rng(11),
    )
    declared = int(result.stopped.sum())
    assert lower_bound(declared, 1000) <= rule.delta, declared


def test_the_validity_check_catches_a_rule_that_peeks() -> None:
    """The same check against a fixed-horizon z-test looked at after every reward: its
    declaration share is far above 0.05, so the check above is not vacuous."""
    result = run_identification(
        create_policy("top_two_thompson", {}),
        PeekingZTest(),
        [0.5, 0.5],
        1000,
        4000,
        np.random.default_rng(11),
    )
    assert lower_bound(int(result.stopped.sum()), 1000) > 0.05


def test_a_real_gap_commits_to_the_better_arm_within_6000_pairs() -> None:
    """0.6 against 0.4 under top-two allocation: at least 95 % of runs name arm 0 within
    6,000 pairs, and more than half stop before a fixed-horizon z-test with the same error
    rates (level 0.05, power 0.95) would even look: the median is no worse than it."""
    rule = StoppingRule(delta=0.05)
    runs = 400
    result = run_identification(
        create_policy("top_two_thompson", {}),
        rule,
        [0.6, 0.4],
        runs,
        6000,
        np.random.default_rng(12),
    )
    assert lower_bound(int((result.winner == 0).sum()), runs) >= 0.95
    fixed = fixed_horizon_pairs(0.6, 0.4, 0.05, 0.95)
    assert 300 < fixed < 320  # (1.96 + 1.645)^2 * 0.48 / 0.04 per arm, both arms
    stopped_by_fixed = int((result.stopped_at <= fixed).sum())
    assert lower_bound(stopped_by_fixed, runs) > 0.5, stopped_by_fixed


def test_epsilon_lets_ties_stop_without_naming_a_clearly_worse_arm() -> None:
    """epsilon = 0.1: between equal arms either answer is right, so runs stop; against an arm
    0.12 better, naming the worse one is an error, at rate at most delta."""
    rule = StoppingRule(delta=0.05, epsilon=0.1)
    policy = create_policy("top_two_thompson", {})
    runs = 400
    ties = run_identification(policy, rule, [0.5, 0.5], runs, 6000, np.random.default_rng(13))
    assert lower_bound(int(ties.stopped.sum()), runs) >= 0.95
    gap = run_identification(policy, rule, [0.5, 0.38], runs, 6000, np.random.default_rng(15))
    assert lower_bound(int((gap.winner == 1).sum()), runs) <= rule.delta


def test_plain_thompson_sampling_rarely_identifies() -> None:
    """Why ``stopping`` switches allocation: plain Thompson sampling starves the loser, which
    then rarely reaches its minimum and never separates (documented trade against regret)."""
    rule = StoppingRule(delta=0.05)
    runs = 100
    result = run_identification(
        create_policy("thompson", {}), rule, [0.6, 0.4], runs, 6000, np.random.default_rng(14)
    )
    assert upper_bound(int(result.stopped.sum()), runs) < 0.5
