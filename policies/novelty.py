"""Novelty: does an arm's reward fade after a unit's first exposures to it?

A new layout or a new recommendation often does well at first because it is new, and the
effect a bandit locks in is then worth less than it looked. When decisions carry unit ids
(users, sessions; required for sticky assignment), each unit's exposures to an arm can be
numbered: the first ``first_exposures`` of them are "first", the rest "later".

**The test is paired by unit.** For every unit with rewarded first *and* later exposures to
the arm, d_u = mean(first rewards of u) - mean(later rewards of u). Units are independent, so
under "no novelty" (each unit's rewards on the arm have one mean over time, whatever that
mean is) the d_u are independent with mean 0, and the one-sided Student-t test of mean(d) > 0
is valid for large numbers of units (central limit theorem; rewards are bounded or have finite
variance). Pairing removes the differences between units: heavy users, who reach "later"
exposures, are compared with themselves, not with light users who never do.

What the test cannot separate from novelty: a trend common to every arm (later exposures
happen later in time; compare arms' decays), and units whose return depends on the reward
(a user who did not like the first exposure may not come back).

An arm is flagged when its p-value is below ``alpha / K`` (Bonferroni over the K arms tested,
so the report as a whole raises a false flag with probability at most ``alpha``) and at least
``MIN_UNITS`` units had both kinds of exposure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from policies.base import FloatArray

#: Family-wise false-flag rate of the novelty check over all arms of one report.
NOVELTY_ALPHA = 0.01
#: Units with first and later exposures an arm needs before it is tested.
MIN_UNITS = 30


@dataclass(frozen=True)
class NoveltyResult:
    arm: str
    units: int
    first_mean: float
    later_mean: float
    #: mean over units of (first - later); positive means the reward decays.
    decay: float
    ci_low: float
    ci_high: float
    p_value: float
    detected: bool


def novelty_test(
    arm: str,
    first: FloatArray,
    later: FloatArray,
    *,
    tests: int = 1,
    alpha: float = NOVELTY_ALPHA,
    level: float = 0.95,
) -> NoveltyResult:
    """The paired test over units: ``first[u]`` and ``later[u]`` are unit u's mean rewards."""
    first = np.asarray(first, dtype=np.float64)
    later = np.asarray(later, dtype=np.float64)
    m = len(first)
    if m < 2:
        nan = math.nan
        return NoveltyResult(arm, m, nan, nan, nan, nan, nan, 1.0, False)
    d = first - later
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(m)
    t_crit = float(special.stdtrit(m - 1, 0.5 + level / 2.0))
    # A constant difference (se = 0) is a certain decay if positive, none otherwise.
    p_value = float(special.stdtr(m - 1, -mean / se)) if se > 0 else float(mean <= 0)
    return NoveltyResult(
        arm=arm,
        units=m,
        first_mean=float(first.mean()),
        later_mean=float(later.mean()),
        decay=mean,
        ci_low=mean - t_crit * se,
        ci_high=mean + t_crit * se,
        p_value=p_value,
        detected=m >= MIN_UNITS and p_value < alpha / max(tests, 1),
    )


def unit_means(
    units: np.ndarray, first: np.ndarray, rewards: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per unit with both kinds: (mean first reward, mean later reward).

    ``units`` are integer unit ids, ``first`` booleans (a first exposure), ``rewards`` the
    rewards, one entry per rewarded exposure of one arm.
    """
    if len(units) == 0:
        return np.zeros(0), np.zeros(0)
    ids, index = np.unique(units, return_inverse=True)
    size = len(ids)
    f = np.asarray(first, dtype=bool)
    first_n = np.bincount(index[f], minlength=size)
    later_n = np.bincount(index[~f], minlength=size)
    first_sum = np.bincount(index[f], weights=rewards[f], minlength=size)
    later_sum = np.bincount(index[~f], weights=rewards[~f], minlength=size)
    both = (first_n > 0) & (later_n > 0)
    return first_sum[both] / first_n[both], later_sum[both] / later_n[both]


def novelty_report(
    arm_names: Sequence[str],
    arms: np.ndarray,
    units: np.ndarray,
    first: np.ndarray,
    rewards: FloatArray,
    *,
    alpha: float = NOVELTY_ALPHA,
) -> tuple[NoveltyResult, ...]:
    """The test for every arm that has units with first and later rewarded exposures."""
    per_arm = []
    for index, name in enumerate(arm_names):
        mask = arms == index
        a, b = unit_means(units[mask], first[mask], rewards[mask])
        if len(a) >= 2:
            per_arm.append((name, a, b))
    return tuple(
        novelty_test(name, a, b, tests=len(per_arm), alpha=alpha) for name, a, b in per_arm
    )
