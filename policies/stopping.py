"""When an experiment may stop: best-arm identification that stays valid under peeking.

An experimenter who looks at a running bandit after every reward and stops at the first
"significant" difference declares a winner between identical arms far more often than the
nominal level (a fixed-horizon test checked after each of a few thousand rewards errs in a
third of A/A experiments). The rule here is *anytime-valid*: its error bound holds whenever
it is checked, under any allocation of traffic, including adaptive ones.

**The confidence region.** Rewards of arm i lie in [lo, hi], so given the past each reward is
sub-Gaussian around the arm's mean mu_i with variance proxy s^2 = ((hi - lo) / 2)^2
(Hoeffding's lemma). For a fixed lambda, exp(lambda S_i - lambda^2 V_i / 2), with S_i the
arm's centred reward sum and V_i = s^2 n_i, is a nonnegative supermartingale in the
experiment's own time (it only moves when arm i is played, whatever chose it). The product
over arms, mixed over lambda ~ N(0, 1 / rho) independently per arm, is again one (Fubini),
and equals prod_i sqrt(rho / (V_i + rho)) exp(S_i^2 / (2 (V_i + rho))) - Robbins' normal
mixture, in the form of Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist. 49(2), 2021, section 3. Ville's
inequality then gives, with probability at least 1 - delta, at every time at once:

    sum_i w_i (mean_i - mu_i)^2 <= c,   w_i = n_i^2 / (V_i + rho),
    c = 2 log(1 / delta) + sum_i log((V_i + rho) / rho).

This is a confidence sequence on the *joint* vector of means, so a pair of arms costs no
union bound, and the pairwise gaps are read off it: the region contains a point with
mu_b >= mu_a + epsilon only if w_a w_b / (w_a + w_b) (mean_a - mean_b + epsilon)^2 <= c
(or mean_a - mean_b + epsilon <= 0).

**The stopping rule.** Once every eligible arm has ``min_samples`` rewards, arm a is declared
the winner when the region excludes every point where some other eligible arm beats it by
more than ``epsilon``. Guarantee: with probability at least 1 - delta, the declared arm's
mean is within epsilon of the best eligible arm's, however often the rule was checked.

Why a joint region rather than one interval per arm with a union bound: separating two
arms with per-arm intervals needs the sum of two widths below the gap, each at delta / 2K,
about twice the rewards; with the joint region the median experiment on 0.6 against 0.4
stops before a fixed-horizon z-test with the same error rates would be allowed to look
(``bandit-router identify --means 0.6,0.4``). The mixture's rho is tuned for decisions after
a few dozen to a few hundred rewards per arm (``MIXTURE_SAMPLES``); validity holds for any rho.

The rule needs the reward range: Beta-Bernoulli policies have [0, 1]; a Gaussian policy needs
its ``reward_min`` and ``reward_max``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from policies.base import BoolArray, FloatArray, IntArray, PolicyConfigError, Stats, eligible_mask

#: rho of the normal mixture, in rewards of one arm (rho = s^2 * MIXTURE_SAMPLES): the region
#: is tightest around this many rewards per arm and loses only log factors elsewhere.
MIXTURE_SAMPLES = 25.0


@dataclass(frozen=True)
class StoppingRule:
    """``delta``: error probability; ``epsilon``: tolerated shortfall of the winner;
    ``min_samples``: rewards every eligible arm needs before any verdict."""

    delta: float = 0.05
    epsilon: float = 0.0
    min_samples: int = 100
    reward_min: float = 0.0
    reward_max: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 < self.delta < 1.0):
            raise PolicyConfigError("stopping.delta", f"must be in (0, 1), got {self.delta}")
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0.0):
            raise PolicyConfigError("stopping.epsilon", f"must be >= 0, got {self.epsilon}")
        if self.min_samples < 1:
            raise PolicyConfigError("stopping.min_samples", f"must be >= 1, got {self.min_samples}")
        span = self.reward_max - self.reward_min
        if not (math.isfinite(span) and span > 0.0):
            raise PolicyConfigError(
                "stopping", "needs a bounded reward range (reward_min < reward_max)"
            )

    @property
    def variance_proxy(self) -> float:
        return ((self.reward_max - self.reward_min) / 2.0) ** 2

    def verdict(self, stats: Stats, eligible: BoolArray | None = None) -> Verdict:
        """The rule applied to every row of ``stats`` (any batch shape)."""
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        n = np.asarray(stats.n, dtype=np.float64)
        s2 = self.variance_proxy
        rho = s2 * MIXTURE_SAMPLES
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(n > 0, stats.total / np.where(n > 0, n, 1.0), 0.0)
        weights = n * n / (s2 * n + rho)
        radius = 2.0 * math.log(1.0 / self.delta) + np.where(mask, np.log1p(s2 * n / rho), 0.0).sum(
            axis=-1
        )
        ranked = np.where(mask, means, -np.inf)
        leader = np.argmax(ranked, axis=-1)
        lead_mean = np.take_along_axis(means, leader[..., None], axis=-1)
        lead_weight = np.take_along_axis(weights, leader[..., None], axis=-1)
        gap = lead_mean - means + self.epsilon
        with np.errstate(invalid="ignore", divide="ignore"):
            pair_weight = lead_weight * weights / (lead_weight + weights)
        excluded = (gap > 0.0) & (pair_weight * gap * gap > radius[..., None])
        others = mask & (np.arange(stats.n_arms) != leader[..., None])
        enough = np.where(mask, n >= self.min_samples, True).all(axis=-1)
        several = mask.sum(axis=-1) >= 2
        holds = enough & several & np.where(others, excluded, True).all(axis=-1)
        with np.errstate(divide="ignore"):
            half_width = np.where(weights > 0, np.sqrt(radius[..., None] / weights), np.inf)
        lower = np.clip(means - half_width, self.reward_min, self.reward_max)
        upper = np.clip(means + half_width, self.reward_min, self.reward_max)
        winner = np.where(holds, leader, -1).astype(np.int64)
        return Verdict(winner=winner, means=means, lower=lower, upper=upper)


@dataclass(frozen=True)
class Verdict:
    """``winner``: the declared arm per row, -1 while the rule does not hold. ``lower`` and
    ``upper``: per-arm bounds of the same region, valid for all arms and all times at once
    (clipped to the reward range; infinite width before an arm's first reward)."""

    winner: IntArray
    means: FloatArray
    lower: FloatArray
    upper: FloatArray


def fixed_horizon_pairs(mean_a: float, mean_b: float, delta: float, power: float) -> float:
    """Rewards (both arms together) a two-sided two-sample z-test at level ``delta`` needs for
    ``power`` against Bernoulli means ``mean_a`` and ``mean_b``, with equal allocation: the
    fixed-horizon yardstick the sequential rule is compared with."""
    z = NormalDist().inv_cdf
    variance = mean_a * (1 - mean_a) + mean_b * (1 - mean_b)
    per_arm = (z(1 - delta / 2) + z(power)) ** 2 * variance / (mean_a - mean_b) ** 2
    return 2.0 * per_arm
