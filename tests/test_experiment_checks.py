"""The report's experiment checks, tested statistically: sample-ratio mismatch (false alarms
on correct adaptive traffic, detection of lost decisions), CUPED (the variance reduction
against its theoretical 1 - rho^2, interval coverage), novelty (false flags, detection) and
segments (a Simpson's reversal is flagged, equal segments are not).

Every tolerance is derived from the maths in the comment beside it; seeds are fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from policies.base import Stats
from policies.cuped import CupedMoments, cuped_compare
from policies.novelty import NOVELTY_ALPHA, novelty_report, novelty_test, unit_means
from policies.report import BetaModel
from policies.segments import simpson_warnings
from policies.srm import SampleRatioAccumulator, sample_ratio_test


def binomial_upper(trials: int, p: float, z: float = 3.5) -> float:
    """Upper limit on the count of events of probability p: mean + z sd (z = 3.5: a correct
    implementation exceeds it with probability ~2e-4)."""
    return trials * p + z * math.sqrt(trials * p * (1 - p))


# -- sample-ratio mismatch -------------------------------------------------------------------


def test_fixed_shares_give_exactly_pearsons_chi_square() -> None:
    shares = np.array([0.5, 0.3, 0.2])
    observed = np.array([5210.0, 2950.0, 1840.0])
    n = observed.sum()
    result = sample_ratio_test(observed, n * shares, n * np.outer(shares, shares))
    pearson = sps.chisquare(observed, n * shares)
    assert result.statistic == pytest.approx(pearson.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(pearson.pvalue, rel=1e-6)
    assert result.df == 2


def _adaptive_runs(
    runs: int, steps: int, seed: int, drop_arm: int | None = None, drop: float = 0.0
) -> list[SampleRatioAccumulator]:
    """Runs of a 3-arm adaptive policy (probabilities from the running reward means, so they
    move with every reward), each decision drawn from its logged law. With ``drop_arm`` a
    share ``drop`` of that arm's decisions never reaches the log (a real mismatch)."""
    rng = np.random.default_rng(seed)
    means = np.array([0.3, 0.5, 0.4])
    k = len(means)
    n = np.ones((runs, k))
    wins = np.full((runs, k), 0.5)
    accumulators = [SampleRatioAccumulator(k) for _ in range(runs)]
    observed = np.zeros((runs, k))
    expected = np.zeros((runs, k))
    outer = np.zeros((runs, k, k))
    for _ in range(steps):
        score = np.exp(8.0 * wins / n)
        p = 0.9 * score / score.sum(axis=1, keepdims=True) + 0.1 / k
        arm = (rng.random((runs, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
        reward = rng.random(runs) < means[arm]
        n[np.arange(runs), arm] += 1
        wins[np.arange(runs), arm] += reward
        logged = np.ones(runs, dtype=bool)
        if drop_arm is not None:
            logged &= ~((arm == drop_arm) & (rng.random(runs) < drop))
        observed[logged, arm[logged]] += 1
        expected[logged] += p[logged]
        outer[logged] += p[logged, :, None] * p[logged, None, :]
    for i, acc in enumerate(accumulators):
        acc.observed, acc.expected, acc.outer = observed[i], expected[i], outer[i]
    return accumulators


def test_srm_false_alarms_on_correct_adaptive_traffic_are_at_the_nominal_rate() -> None:
    runs = 2000
    p_values = np.array(
        [
            sample_ratio_test(a.observed, a.expected, a.outer).p_value
            for a in _adaptive_runs(runs, 400, seed=7)
        ]
    )
    # Under the null the p-values are (asymptotically) uniform: the count below 0.05 is
    # Binomial(2000, 0.05), and below the alarm level 0.001 Binomial(2000, 0.001).
    assert (p_values < 0.05).sum() <= binomial_upper(runs, 0.05)
    assert (p_values < 0.001).sum() <= binomial_upper(runs, 0.001)
    # ... and not far below it either (a test that never alarms passes the line above).
    assert (p_values < 0.05).sum() >= runs * 0.05 - 3.5 * math.sqrt(runs * 0.05 * 0.95)


def test_srm_detects_lost_decisions_of_one_arm() -> None:
    # A share delta of arm 1's decisions lost: against the logged laws of the decisions that
    # remain, arm 1 is short by about delta q (1 - q) N (q its share, ~0.5 here), with
    # standard deviation sqrt(N q (1 - q)): z ~ delta sqrt(N q (1 - q)) = 0.2 sqrt(1500) ~ 7.7
    # against the 0.001 line of a chi-square with 2 degrees of freedom (13.8, z ~ 3.7). The
    # power is above 0.999, so 95 of 100 runs is a loose floor.
    runs = 100
    detected = sum(
        sample_ratio_test(a.observed, a.expected, a.outer).mismatch
        for a in _adaptive_runs(runs, 6000, seed=11, drop_arm=1, drop=0.2)
    )
    assert detected >= 95


def test_srm_excludes_deterministic_decisions_and_flags_impossible_ones() -> None:
    acc = SampleRatioAccumulator(2)
    for _ in range(50):
        acc.add(0, np.array([1.0, 0.0]))  # pinned: nothing expected of the split
    assert acc.deterministic == 50
    result = sample_ratio_test(acc.observed, acc.expected, acc.outer)
    assert not result.applicable and not result.mismatch
    acc.add(1, np.array([1.0, 0.0]))  # chose an arm its law excluded
    result = sample_ratio_test(acc.observed, acc.expected, acc.outer, impossible=acc.impossible)
    assert result.mismatch and result.p_value == 0.0


# -- CUPED ------------------------------------------------------------------------------------


def _correlated(rng: np.random.Generator, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal(n)
    y = rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal(n)
    return 10.0 + 2.0 * x, y


@pytest.mark.parametrize("rho", [0.3, 0.7])
def test_cuped_variance_reduction_is_rho_squared(rho: float) -> None:
    rng = np.random.default_rng(2024)
    per_arm, effect = 20_000, 0.05
    moments = CupedMoments(2)
    for arm in (0, 1):
        x, y = _correlated(rng, per_arm, rho)
        moments.add_arrays(np.full(per_arm, arm), x, y + effect * arm)
    result = cuped_compare(moments, ("control", "treatment"), control=0)
    # The reported reduction is r^2, r the pooled within-arm correlation of N = 40,000 normal
    # pairs: sd(r) ~ (1 - rho^2) / sqrt(N), so sd(r^2) ~ 2 rho (1 - rho^2) / sqrt(N). 4 sd.
    n = 2 * per_arm
    tolerance = 4 * 2 * rho * (1 - rho * rho) / math.sqrt(n)
    assert abs(result.variance_reduction - rho * rho) <= tolerance
    (comparison,) = result.comparisons
    # The difference's variance falls by the same factor (equal arms: the same r^2 up to the
    # per-arm estimates, each from N/2 pairs: sqrt(2) times the tolerance).
    assert abs(comparison.variance_reduction - rho * rho) <= math.sqrt(2) * tolerance
    # Both estimate the same effect; the adjusted one within 4 of its standard errors
    # (sd of the adjusted difference: sqrt(2 (1 - rho^2) / per_arm)).
    se_adjusted = math.sqrt(2 * (1 - rho * rho) / per_arm)
    assert abs(comparison.adjusted_difference - effect) <= 4 * se_adjusted
    width = comparison.adjusted_ci_high - comparison.adjusted_ci_low
    assert width == pytest.approx(2 * 1.959964 * se_adjusted, rel=0.05)


def test_cuped_interval_covers_the_effect_at_its_level() -> None:
    rng = np.random.default_rng(99)
    reps, per_arm, effect, rho = 1000, 300, 0.2, 0.6
    missed = 0
    for _ in range(reps):
        moments = CupedMoments(2)
        for arm in (0, 1):
            x, y = _correlated(rng, per_arm, rho)
            moments.add_arrays(np.full(per_arm, arm), x, y + effect * arm)
        (c,) = cuped_compare(moments, ("a", "b"), control=0).comparisons
        missed += not c.adjusted_ci_low <= effect <= c.adjusted_ci_high
    # Misses ~ Binomial(1000, 0.05) (theta's estimation adds O(1/n) to the variance).
    assert missed <= binomial_upper(reps, 0.05)
    assert missed >= reps * 0.05 - 3.5 * math.sqrt(reps * 0.05 * 0.95)


# -- novelty ----------------------------------------------------------------------------------


def _units(
    rng: np.random.Generator, units: int, first_lift: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exposures of one arm: each unit has its own rate (Beta(2, 3), mean 0.4), 1 to 6
    exposures; the first one's rate is raised by ``first_lift`` (novelty)."""
    rate = rng.beta(2.0, 3.0, units)
    count = rng.integers(1, 7, units)
    unit = np.repeat(np.arange(units), count)
    first = np.concatenate([np.arange(c) == 0 for c in count])
    p = np.clip(rate[unit] + first_lift * first, 0.0, 1.0)
    return unit, first, (rng.random(len(unit)) < p).astype(float)


def test_novelty_false_flags_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(5)
    reps = 1000
    p_values = []
    for _ in range(reps):
        unit, first, reward = _units(rng, 300, 0.0)
        a, b = unit_means(unit, first, reward)
        p_values.append(novelty_test("a", a, b).p_value)
    below = np.array(p_values) < 0.05
    # One-sided p-values of a correct test: P(p < 0.05) = 0.05, count Binomial(1000, 0.05).
    assert below.sum() <= binomial_upper(reps, 0.05)
    assert below.sum() >= reps * 0.05 - 3.5 * math.sqrt(reps * 0.05 * 0.95)


def test_novelty_detects_a_decaying_arm_and_not_a_steady_one() -> None:
    rng = np.random.default_rng(6)
    reps, flagged_decay, flagged_steady = 100, 0, 0
    for _ in range(reps):
        u1, f1, r1 = _units(rng, 400, 0.2)
        u2, f2, r2 = _units(rng, 400, 0.0)
        arms = np.concatenate([np.zeros(len(u1), int), np.ones(len(u2), int)])
        results = novelty_report(
            ["new", "old"],
            arms,
            np.concatenate([u1, u2]),
            np.concatenate([f1, f2]),
            np.concatenate([r1, r2]),
        )
        flagged = {r.arm: r.detected for r in results}
        flagged_decay += flagged["new"]
        flagged_steady += flagged["old"]
    # ~330 of 400 units have later exposures; d_u has sd ~ 0.55, so the mean's se ~ 0.03 and
    # a 0.2 lift is ~6.6 se against the one-sided 0.005 line (2.58): power ~ 1.
    assert flagged_decay >= 95
    # The steady arm is flagged with probability at most alpha / 2 per report.
    assert flagged_steady <= binomial_upper(reps, NOVELTY_ALPHA / 2)


# -- segments ---------------------------------------------------------------------------------


def bernoulli(n: list[float], wins: list[float]) -> Stats:
    return Stats(np.array(n), np.array(wins), np.array(wins))


def test_a_reversed_segment_is_flagged_and_equal_segments_are_not() -> None:
    model = BetaModel()
    # Simpson: b is better in both segments, but a got most of its traffic in the easy one.
    segments = {
        "mobile=0": bernoulli([4000, 300], [3200, 270]),  # a 0.80, b 0.90
        "mobile=1": bernoulli([300, 4000], [60, 1200]),  # a 0.20, b 0.30
    }
    overall, warnings = simpson_warnings(["a", "b"], segments, model)
    assert overall.best_arm == "a" and overall.arm("a").prob_best > 0.999  # 0.76 vs 0.34
    assert {w.segment for w in warnings} == {"mobile=0", "mobile=1"}
    assert {w.segment_best for w in warnings} == {"b"}
    # One reversed segment among agreeing ones is flagged alone.
    segments["mobile=2"] = bernoulli([1000, 1000], [700, 500])
    segments["mobile=0"] = bernoulli([4000, 300], [3200, 200])
    assert {w.segment for w in simpson_warnings(["a", "b"], segments, model)[1]} == {"mobile=1"}
    # A segment whose own winner agrees with the overall one: nothing to say.
    agreeing = {
        "x=0": bernoulli([1000, 1000], [600, 400]),
        "x=1": bernoulli([1000, 1000], [550, 450]),
    }
    assert simpson_warnings(["a", "b"], agreeing, model)[1] == ()


def test_segment_warnings_are_rare_when_segments_do_not_differ() -> None:
    # Arm a is better everywhere (0.55 vs 0.5); 20 segments of 400 rewards per arm. A segment
    # where b looks better is chance; the Bonferroni threshold keeps the chance of any warning
    # per report below 0.05, so over 200 reports at most Binomial(200, 0.05)'s upper limit.
    rng = np.random.default_rng(3)
    model = BetaModel()
    reports_with_warnings = 0
    reps = 200
    for _ in range(reps):
        wins = rng.binomial(400, [0.55, 0.5], size=(20, 2)).astype(float)
        segments = {f"s={i}": bernoulli([400.0, 400.0], list(wins[i])) for i in range(20)}
        reports_with_warnings += bool(simpson_warnings(["a", "b"], segments, model)[1])
    assert reports_with_warnings <= binomial_upper(reps, 0.05)
