"""Sample-ratio mismatch: did each arm get the traffic the decision procedure said it would?

A mismatch between the decisions an arm received and the decisions it should have received
means the data is broken somewhere (decisions lost on their way to the log, a client that
retries one arm more than another, a probability that is logged but not the one drawn from),
and no comparison of rewards can be trusted until it is explained. GrowthBook and others run
Pearson's chi-square against the configured shares, which needs shares that are fixed.

**Expected counts from the logged law.** Every decision logs the probability of each eligible
arm under the whole decision procedure (pins, holdout, sticky units, floor and policy). With
p_t the law of decision t and e_t the indicator of the arm it chose, the deviations
d = sum_t (e_t - p_t) form a martingale whatever the policy does with past rewards, with
conditional covariance Sigma = sum_t (diag(p_t) - p_t p_t^T) = diag(E) - M, where
E_k = sum_t p_tk (the expected count) and M_kj = sum_t p_tk p_tj. The martingale central limit
theorem makes d^T Sigma^+ d approximately chi-square with rank(Sigma) degrees of freedom under
the null hypothesis that decisions were drawn from their logged laws. So the check is valid
for adaptive allocation too, and needs only E, M and the observed counts (O(K^2) memory).

When every p_t is the same p (fixed shares over N decisions), Sigma = N (diag(p) - p p^T) and
the statistic is exactly Pearson's sum (O_k - E_k)^2 / E_k. With shares that move, Pearson's
statistic would overstate the variance (sum_t p_t p_t^T >= E E^T / N) and miss mismatches.

A deterministic decision (a pin, a commit, a paused experiment, a sticky unit's held arm:
p_t is one arm with probability 1) adds nothing to d or Sigma: those periods are excluded by
the maths itself, as the issue asks, not by a list of reasons. A decision whose chosen arm had
logged probability 0 is impossible under the null and is reported as a mismatch on its own.

**Small counts.** The chi-square approximation needs expected counts of at least
``MIN_EXPECTED`` (5, the usual rule) per cell: arms below it are pooled into one cell (a linear
map of d, so the statistic stays valid), which is dropped if it is still below it. The test
runs when at least two cells remain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from policies.base import FloatArray

#: The alarm threshold GrowthBook and Optimizely use: a correct setup raises it once in 1000.
SRM_ALPHA = 0.001
#: Expected decisions per chi-square cell (Cochran's rule).
MIN_EXPECTED = 5.0


class SampleRatioAccumulator:
    """The sufficient statistics of the check, one decision at a time (O(K^2) memory)."""

    def __init__(self, n_arms: int) -> None:
        self.observed = np.zeros(n_arms)
        self.expected = np.zeros(n_arms)
        self.outer = np.zeros((n_arms, n_arms))
        self.decisions = 0
        self.deterministic = 0
        self.impossible = 0

    def add(self, chosen: int, probabilities: FloatArray) -> None:
        """One decision: the index of the chosen arm and the law it was drawn from."""
        self.decisions += 1
        if probabilities[chosen] <= 0.0:
            self.impossible += 1
        if np.max(probabilities) >= 1.0:
            self.deterministic += 1
            return
        self.observed[chosen] += 1.0
        self.expected += probabilities
        self.outer += np.outer(probabilities, probabilities)

    def add_table(self, probabilities: FloatArray, chosen: FloatArray) -> None:
        """Every decision drawn from one law at once: ``chosen[k]`` of them chose arm k.

        A decision log shares one table among the decisions of one cached state, so this
        costs one outer product per table rather than per decision."""
        count = float(chosen.sum())
        self.decisions += int(count)
        self.impossible += int(chosen[probabilities <= 0.0].sum())
        if np.max(probabilities) >= 1.0:
            self.deterministic += int(count)
            return
        self.observed += chosen
        self.expected += count * probabilities
        self.outer += count * np.outer(probabilities, probabilities)


@dataclass(frozen=True)
class SampleRatioResult:
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    statistic: float
    df: int
    p_value: float
    applicable: bool
    mismatch: bool
    note: str


def sample_ratio_test(
    observed: FloatArray,
    expected: FloatArray,
    outer: FloatArray,
    *,
    impossible: int = 0,
    alpha: float = SRM_ALPHA,
) -> SampleRatioResult:
    """The martingale chi-square test of observed counts against logged laws (module doc).

    ``observed``, ``expected`` (E) and ``outer`` (M) are over the non-deterministic decisions.
    """
    observed = np.asarray(observed, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    outer = np.asarray(outer, dtype=np.float64)
    shown = (tuple(float(x) for x in observed), tuple(float(x) for x in expected))
    if impossible:
        return SampleRatioResult(
            *shown,
            math.inf,
            0,
            0.0,
            True,
            True,
            f"{impossible} decisions chose an arm their logged law gave probability 0",
        )
    big = expected >= MIN_EXPECTED
    rows = [np.eye(len(expected))[i] for i in np.flatnonzero(big)]
    small = ~big & (expected > 0)
    if expected[small].sum() >= MIN_EXPECTED:
        rows.append(small.astype(np.float64))
    if len(rows) < 2:
        return SampleRatioResult(
            *shown,
            0.0,
            0,
            1.0,
            False,
            False,
            f"not enough randomised decisions (needs {MIN_EXPECTED:g} expected in two arms)",
        )
    a = np.array(rows)
    d = a @ (observed - expected)
    sigma = a @ (np.diag(expected) - outer) @ a.T
    values, vectors = np.linalg.eigh(sigma)
    keep = values > values.max() * 1e-9
    projected = vectors[:, keep].T @ d
    statistic = float(np.sum(projected**2 / values[keep]))
    df = int(keep.sum())
    p_value = float(special.chdtrc(df, statistic))
    mismatch = p_value < alpha
    note = (
        f"sample ratio mismatch: p = {p_value:.2g} < {alpha:g}; find the cause before "
        "trusting any comparison"
        if mismatch
        else f"no sample ratio mismatch (p = {p_value:.3g})"
    )
    return SampleRatioResult(*shown, statistic, df, p_value, True, mismatch, note)
