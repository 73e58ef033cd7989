"""The report's metric statistics (``policies.metric_report``) against known truth.

Coverage is checked by simulation with fixed seeds. With R replications and true coverage c,
the observed coverage is Binomial(R, c) / R with sd sqrt(c (1 - c) / R) = 0.0034 for R =
4,000 and c = 0.95; every check allows 4 sd (a false failure once in ~30,000 runs) plus, for
the approximate intervals, the documented gap between their true and nominal coverage:

* Student t on Normal data is exact: no gap.
* Welch's t on Normal data with unequal variances: within 0.005 of nominal for these sizes
  (Best and Rayner 1987).
* Wilson and Newcombe's hybrid score interval on Bernoulli data: their coverage oscillates
  with n and p but stays above 0.93 for n >= 100 and p in [0.05, 0.95] (Brown, Cai and
  DasGupta 2001; Newcombe 1998, table II); the test asks for at least that, less 4 sd.

The sketch's quantiles are within (gamma - 1) / (gamma + 1) of the exact sample quantile of
the same rank (the DDSketch guarantee), checked on a seeded sample of 20,000 values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bandit_router.model.observations import GAMMA, bucket_value, sketch_bucket
from policies import metric_report as maths

R = 4000
SD = math.sqrt(0.95 * 0.05 / R)


def stats_of(values: np.ndarray) -> maths.MetricStats:
    return maths.MetricStats(float(len(values)), float(values.sum()), float((values**2).sum()))


def test_t_interval_covers_a_normal_mean_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(1501)
    covered = 0
    for _ in range(R):
        sample = rng.normal(3.0, 2.0, size=15)
        low, high = maths.mean_interval(stats_of(sample), False, 0.95)
        covered += low <= 3.0 <= high
    assert abs(covered / R - 0.95) <= 4 * SD


def test_t_interval_is_clipped_to_the_declared_bounds_and_open_below_two() -> None:
    low, high = maths.mean_interval(maths.MetricStats(1, 0.5, 0.25), False, 0.95, (0.0, 1.0))
    assert (low, high) == (0.0, 1.0)
    sample = np.array([0.0, 0.01, 0.0, 0.02])
    low, _ = maths.mean_interval(stats_of(sample), False, 0.95, (0.0, 1.0))
    assert low == 0.0


def test_wilson_limits_solve_the_score_equation() -> None:
    """The Wilson limits are the p where |phat - p| = z sqrt(p (1 - p) / n)."""
    z = float(scipy_stats.norm.ppf(0.975))
    for n, k in ((10, 0), (10, 3), (200, 57), (1000, 999)):
        low, high = maths.wilson(n, k, 0.95)
        phat = k / n
        for p in (low, high):
            if p in (0.0, 1.0) and phat == p:
                continue
            assert abs(abs(phat - p) - z * math.sqrt(p * (1 - p) / n)) < 1e-12


@pytest.mark.parametrize(("n", "p"), [(100, 0.05), (150, 0.3), (400, 0.9)])
def test_wilson_covers_a_proportion(n: int, p: float) -> None:
    rng = np.random.default_rng(n)
    successes = rng.binomial(n, p, size=R)
    covered = 0
    for k in successes:
        low, high = maths.wilson(n, float(k), 0.95)
        covered += low <= p <= high
    assert covered / R >= 0.93 - 4 * SD


def test_newcombe_difference_covers_the_true_difference() -> None:
    rng = np.random.default_rng(1502)
    p1, p2, n1, n2 = 0.3, 0.1, 200, 150
    covered = 0
    for k1, k2 in zip(rng.binomial(n1, p1, R), rng.binomial(n2, p2, R), strict=True):
        a = maths.MetricStats(n1, float(k1), float(k1))
        b = maths.MetricStats(n2, float(k2), float(k2))
        _, low, high = maths.difference_interval(a, b, True, 0.95)
        covered += low <= p1 - p2 <= high
    assert covered / R >= 0.93 - 4 * SD


def test_welch_difference_covers_the_true_difference() -> None:
    rng = np.random.default_rng(1503)
    covered = 0
    for _ in range(R):
        a = stats_of(rng.normal(1.0, 1.0, size=12))
        b = stats_of(rng.normal(0.5, 3.0, size=30))
        _, low, high = maths.difference_interval(a, b, False, 0.95)
        covered += low <= 0.5 <= high
    assert abs(covered / R - 0.95) <= 0.005 + 4 * SD


@pytest.mark.parametrize("shift", [0.0, -50.0])
def test_sketch_quantiles_are_within_the_relative_error_of_the_exact_ones(shift: float) -> None:
    """Latency-like values (log-normal around 120 ms, a few exact zeros); shifted, half of
    them negative (the sketch's mirror buckets)."""
    rng = np.random.default_rng(1504)
    values = np.concatenate([rng.lognormal(math.log(120.0), 0.8, 20_000) + shift, np.zeros(50)])
    counts: dict[str, int] = {}
    for value in values:
        bucket = sketch_bucket(float(value))
        counts[bucket] = counts.get(bucket, 0) + 1
    qs = (0.01, 0.25, 0.5, 0.9, 0.99, 0.999)
    estimated = maths.sketch_quantiles([(bucket_value(b), c) for b, c in counts.items()], qs)
    error = maths.relative_error(GAMMA)
    assert error == pytest.approx(0.0099, abs=1e-4)
    for q, estimate in zip(qs, estimated, strict=True):
        exact = float(np.quantile(values, q, method="lower"))
        assert abs(estimate - exact) <= error * abs(exact) * (1 + 1e-12), q


def test_sketch_quantiles_of_an_empty_sketch_are_nan() -> None:
    assert all(math.isnan(v) for v in maths.sketch_quantiles([], (0.5, 0.9)))


def test_dominance_follows_each_metrics_direction() -> None:
    # columns: quality (maximise), cost (minimise)
    means = np.array([[0.80, 0.05], [0.75, 0.001], [0.74, 0.01], [0.80, 0.05]])
    d = maths.dominance(means, [1.0, -1.0])
    assert d[1, 2] and not d[2, 1]  # b: better quality and cheaper than c
    assert not d[0, 1] and not d[1, 0]  # a and b trade off: both on the front
    assert not d[0, 3] and not d[3, 0]  # equal means dominate neither way
    assert not d.diagonal().any()
