"""Bernoulli KL-UCB (Garivier and Cappé 2011): the asymptotically optimal optimistic index.

The index of an arm with n plays and mean p is the largest q >= p with
n kl(p, q) <= ln t + c ln ln t. It has no closed form; we solve it by Newton's method in
y = -ln(1 - q), where kl is convex, increasing and asymptotically linear, so Newton started
above the root descends monotonically and stays fast when q is within 1e-10 of 1. Iterations
stop when the step in q is below 1e-13 (tested against bisection to 1e-9).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from scipy import special

from policies.base import (
    BoolArray,
    FloatArray,
    ParamSpec,
    Policy,
    ScalarStats,
    Selection,
    Stats,
    argmax_one,
    argmax_random_ties,
    eligible_mask,
    explored_flags,
    tie_probabilities,
)
from policies.ucb import INDEX_TIE_TOLERANCE, plays

_LN2 = math.log(2.0)
STEP_TOLERANCE = 1e-13
MAX_ITERATIONS = 60


def _kl_minus(p: FloatArray, q: FloatArray, y: FloatArray) -> FloatArray:
    """kl(p, q) for q = 1 - exp(-y) >= p, accurate both near q = p and near q = 1.

    Written as p g(d/p) + (1-p) g(-d/(1-p)) with g(u) = u - log1p(u) >= 0, d = q - p: the
    linear terms cancel analytically, not in floating point. Near q = 1 the second log is
    taken from y directly, since 1 - q has lost its digits.
    """
    d = q - p
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u1 = d / p
        near = p * (u1 - np.log1p(u1))  # accurate while q / p is close to 1
        far = d - special.xlogy(p, q) + special.xlogy(p, p)  # and this for q >> p (or p ~ 0)
        first = np.where(u1 < 1.0, near, far)
        one_minus = 1.0 - p
        u2 = -d / one_minus
        log_ratio = np.where(u2 > -0.5, np.log1p(u2), -y - np.log1p(-p))
        second = np.where(one_minus > 0, one_minus * (u2 - log_ratio), 0.0)
    return np.asarray(first + second, dtype=np.float64)


def kl_ucb_index(mean: FloatArray, bound: FloatArray) -> FloatArray:
    """max q in [mean, 1] with kl(mean, q) <= bound, elementwise (bound >= 0)."""
    p = np.clip(mean, 0.0, 1.0)
    bound = np.maximum(bound, 0.0)
    # Two upper bounds on the root: Pinsker (kl >= 2 (q - p)^2) and kl >= (1-p) y - ln 2.
    pinsker = p + np.sqrt(0.5 * bound)
    with np.errstate(divide="ignore", invalid="ignore"):
        y_pinsker = np.where(pinsker < 1.0, -np.log1p(-np.minimum(pinsker, 1.0)), np.inf)
        y_linear = np.where(p < 1.0, (bound + _LN2) / (1.0 - p), np.inf)
    y = np.minimum(y_pinsker, y_linear)
    active = (p < 1.0) & (bound > 0.0)
    y = np.where(active, y, 0.0)
    for _ in range(MAX_ITERATIONS):
        q = -np.expm1(-y)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = (_kl_minus(p, q, y) - bound) * q / (q - p)  # h / h', h' = (q - p) / q
        step = np.where(active & np.isfinite(step), step, 0.0)
        y = y - step
        if not (np.abs(step) * np.exp(-y) > STEP_TOLERANCE).any():
            break
    q = -np.expm1(-y)
    return np.asarray(np.where(active, np.maximum(q, p), np.where(p >= 1.0, 1.0, p)))


def kl_ucb_index_one(p: float, bound: float) -> float:
    """Scalar twin of ``kl_ucb_index`` (same formulas, ``math`` instead of numpy)."""
    p = min(max(p, 0.0), 1.0)
    if p >= 1.0 or bound <= 0.0:
        return p
    pinsker = p + math.sqrt(0.5 * bound)
    y = min(-math.log1p(-pinsker) if pinsker < 1.0 else math.inf, (bound + _LN2) / (1.0 - p))
    log1p_minus_p = math.log1p(-p)
    for _ in range(MAX_ITERATIONS):
        q = -math.expm1(-y)
        d = q - p
        if d <= 0.0:
            break
        if d < p:
            first = p * (d / p - math.log1p(d / p))
        else:
            first = d - p * (math.log(q) - math.log(p)) if p > 0.0 else d
        u2 = -d / (1.0 - p)
        log_ratio = math.log1p(u2) if u2 > -0.5 else -y - log1p_minus_p
        step = (first + (1.0 - p) * (u2 - log_ratio) - bound) * q / d
        y -= step
        if abs(step) * math.exp(-y) <= STEP_TOLERANCE:
            break
    return max(-math.expm1(-y), p)


class KLUCB(Policy):
    """Bernoulli KL-UCB; arms never rewarded come first. Rewards in [0, 1]."""

    name: ClassVar[str] = "kl_ucb"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {
        "c": ParamSpec(0.0, 0.0, math.inf, doc="weight of the ln ln t term"),
    }
    reward_bounds = (0.0, 1.0)

    def exploration_bound(self, log_t: FloatArray | float) -> FloatArray:
        """ln t + c ln ln t, the ln ln term taken as 0 while ln t < e (it would be negative)."""
        log_log = np.log(np.maximum(log_t, 1.0))
        return np.asarray(log_t + self.params["c"] * log_log, dtype=np.float64)

    def indices(self, stats: Stats) -> FloatArray:
        bound = self.exploration_bound(np.log(plays(stats)))
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = stats.total / stats.n
            index = kl_ucb_index(np.where(stats.n > 0, mean, 0.0), bound / stats.n)
        return np.asarray(np.where(stats.n > 0, index, np.inf), dtype=np.float64)

    def select(
        self, stats: Stats, rng: np.random.Generator, eligible: BoolArray | None = None
    ) -> Selection:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        arms = argmax_random_ties(self.indices(stats), mask, rng, INDEX_TIE_TOLERANCE)
        return Selection(arms, explored_flags(self.greedy_values(stats), mask, arms))

    def probabilities(self, stats: Stats, eligible: BoolArray | None = None) -> FloatArray:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        return tie_probabilities(self.indices(stats), mask, INDEX_TIE_TOLERANCE)

    def select_one(
        self, stats: ScalarStats, rng: random.Random, eligible: Sequence[int]
    ) -> tuple[int, bool]:
        counts, totals = stats.n, stats.total
        log_t = math.log(max(sum(counts), 1.0))
        bound = log_t + self.params["c"] * math.log(max(log_t, 1.0))
        index = [math.inf] * len(counts)
        for i in eligible:
            n = counts[i]
            if n > 0:
                index[i] = kl_ucb_index_one(totals[i] / n, bound / n)
        arm = argmax_one(index, eligible, rng, INDEX_TIE_TOLERANCE)
        return arm, self.explored_one(stats, eligible, arm)
