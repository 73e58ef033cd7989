"""Fixed-time summaries of an arm's named metrics, and the trade-off between arms.

Pure maths for the report (``bandit_router.analysis.metric_report`` gathers the inputs):

* **Intervals of a mean** at a stated confidence, from the sufficient statistics the store
  keeps (count, sum, sum of squares): the Wilson score interval for a binary metric (good
  coverage even near 0 or 1, unlike the normal one), Student's t for a continuous one.
  These are fixed-time intervals: valid for one look at the data, not under continuous
  monitoring (the guardrails and constraints use anytime-valid tests for that).
* **Differences of means** between two arms: Newcombe's hybrid score interval (his method
  10, built from the two Wilson intervals) for binary metrics, Welch's t for continuous ones.
* **Quantiles of a log-bucket sketch** (``model.observations``): the value of the bucket
  holding the element of rank floor(q (n - 1)), within the sketch's relative error of that
  exact sample quantile (Masson, Rim and Lee, VLDB 2019).
* **Pareto dominance** on means, each metric in its direction, and whether the dominance is
  significant: the dominating arm is better on at least one metric with the difference's
  interval excluding 0, at the confidence split over the metrics (Bonferroni).

API::

    MetricStats(count, total, squares); .mean; .variance
    wilson(count, successes, confidence) -> (low, high)
    mean_interval(stats, binary, confidence, bounds) -> (low, high)
    difference_interval(a, b, binary, confidence) -> (difference, low, high)
    sketch_quantiles(buckets, qs) -> list[float]    buckets: (value, count) pairs
    relative_error(gamma) -> float
    dominance(means, signs) -> bool matrix D[i, j]: i dominates j
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from policies.base import BoolArray


@dataclass(frozen=True)
class MetricStats:
    """Count, sum and sum of squares of one metric's observations on one arm."""

    count: float
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count > 0 else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance (NaN below two observations; never negative, whatever
        the rounding of the running sums)."""
        if self.count < 2:
            return math.nan
        centred = self.squares - self.total * self.total / self.count
        return max(0.0, centred / (self.count - 1.0))


def _z(confidence: float) -> float:
    return float(scipy_stats.norm.ppf(0.5 + confidence / 2.0))


def wilson(count: float, successes: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) without observations."""
    if count <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / count
    z2n = z * z / count
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / count + z2n / (4.0 * count)) / (1.0 + z2n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(
    stats: MetricStats,
    binary: bool,
    confidence: float,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[float, float]:
    """Interval of the arm's mean: Wilson for binary, else Student t clipped to ``bounds``
    (the bounds themselves below two observations: the data say nothing yet)."""
    if binary:
        return wilson(stats.count, stats.total, confidence)
    low, high = bounds
    if stats.count < 2:
        return low, high
    t = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, stats.count - 1.0))
    half = t * math.sqrt(stats.variance / stats.count)
    return max(low, stats.mean - half), min(high, stats.mean + half)


def difference_interval(
    a: MetricStats, b: MetricStats, binary: bool, confidence: float
) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its interval; (NaN, -inf, inf) when either side lacks data."""
    difference = a.mean - b.mean
    if binary:
        if a.count <= 0 or b.count <= 0:
            return difference, -math.inf, math.inf
        # Newcombe (1998), method 10: the Wilson limits of each proportion, combined.
        l1, u1 = wilson(a.count, a.total, confidence)
        l2, u2 = wilson(b.count, b.total, confidence)
        p1, p2 = a.mean, b.mean
        low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
        return difference, low, high
    if a.count < 2 or b.count < 2:
        return difference, -math.inf, math.inf
    va, vb = a.variance / a.count, b.variance / b.count
    se2 = va + vb
    if se2 <= 0.0:
        return difference, difference, difference
    # Welch-Satterthwaite degrees of freedom.
    df = se2 * se2 / (va * va / (a.count - 1.0) + vb * vb / (b.count - 1.0))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df)) * math.sqrt(se2)
    return difference, difference - half, difference + half


def relative_error(gamma: float) -> float:
    """The sketch's bound on a quantile's relative error: (gamma - 1) / (gamma + 1)."""
    return (gamma - 1.0) / (gamma + 1.0)


def sketch_quantiles(buckets: Sequence[tuple[float, float]], qs: Sequence[float]) -> list[float]:
    """Quantiles ``qs`` of the values counted in ``buckets`` ((value, count) pairs, any
    order): for each q the value of the bucket holding rank floor(q (n - 1)), 0-based in
    sorted order (NumPy's ``method="lower"``). NaN for an empty sketch."""
    ordered = sorted((value, count) for value, count in buckets if count > 0)
    n = sum(count for _, count in ordered)
    if n <= 0:
        return [math.nan for _ in qs]
    values = np.array([value for value, _ in ordered])
    cumulative = np.cumsum([count for _, count in ordered])
    result = []
    for q in qs:
        rank = math.floor(q * (n - 1))
        index = int(np.searchsorted(cumulative, rank, side="right"))
        result.append(float(values[min(index, len(values) - 1)]))
    return result


def dominance(means: np.ndarray, signs: Sequence[float]) -> BoolArray:
    """D[i, j]: arm i dominates arm j on the means (rows: arms, columns: metrics; signs +1
    for metrics to maximise, -1 to minimise): no worse on every metric, better on one."""
    oriented = np.asarray(means, dtype=np.float64) * np.asarray(signs, dtype=np.float64)
    no_worse = np.all(oriented[:, None, :] >= oriented[None, :, :], axis=2)
    better = np.any(oriented[:, None, :] > oriented[None, :, :], axis=2)
    result: BoolArray = no_worse & better
    return result
