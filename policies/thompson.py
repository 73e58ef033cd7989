"""Beta-Bernoulli Thompson sampling: play each arm with the posterior probability it is best.

Rewards in [0, 1]; a fractional reward counts as a pseudo-count (alpha += r, beta += 1 - r),
which keeps the posterior conjugate and lets discounted (fractional) counts work unchanged.
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
    IntArray,
    ParamSpec,
    Policy,
    ScalarStats,
    Selection,
    Stats,
    argmax_random_ties,
    eligible_mask,
    explored_flags,
    max_probabilities,
    positive,
)

_LN4 = math.log(4.0)
_ONE_PLUS_LN5 = 1.0 + math.log(5.0)


def beta_variate(rng: random.Random, a: float, b: float) -> float:
    """One Beta(a, b) draw in pure Python: Cheng's (1978) algorithm BB when a, b > 1.

    BB needs two uniforms and usually no logarithm, about twice as fast as
    ``random.betavariate`` (two gamma draws); other shapes fall back to the stdlib, which is
    exact too. Exact squeeze constants (ln 4, 1 + ln 5) rather than Cheng's 7-digit ones.
    """
    if a <= 1.0 or b <= 1.0:
        return rng.betavariate(a, b)
    small, large = (a, b) if a <= b else (b, a)
    alpha = small + large
    beta = math.sqrt((alpha - 2.0) / (2.0 * small * large - alpha))
    gamma = small + 1.0 / beta
    uniform, log, exp = rng.random, math.log, math.exp
    while True:
        u1 = uniform()
        if u1 <= 0.0:
            continue
        u2 = uniform()
        v = beta * log(u1 / (1.0 - u1))
        w = small * exp(v) if v < 709.0 else math.inf
        z = u1 * u1 * u2
        r = gamma * v - _LN4
        s = small + r - w
        if s + _ONE_PLUS_LN5 >= 5.0 * z:
            break
        t = log(z) if z > 0.0 else -math.inf
        if s > t or r + alpha * log(alpha / (large + w)) >= t:
            break
    if math.isinf(w):
        return 1.0 if small == a else 0.0
    return w / (large + w) if small == a else large / (large + w)


def argmax_of_draws(
    draws: FloatArray, mask: BoolArray, all_eligible: bool, rng: np.random.Generator
) -> IntArray:
    """Argmax of continuous posterior draws: ties need care only for saturated draws.

    Two Beta draws tie with probability ~2^-52 unless they underflow to exactly 0 or round
    to 1 (tiny shape parameters); only those rows go through uniform tie-breaking, which
    saves a third of the batched cost of ``select``.
    """
    masked = draws if all_eligible else np.where(mask, draws, -np.inf)
    arms = np.argmax(masked, axis=-1)
    best = np.take_along_axis(masked, arms[..., None], axis=-1)[..., 0]
    saturated = (best <= 0.0) | (best >= 1.0)
    if saturated.any():
        arms = np.where(saturated, argmax_random_ties(masked, mask, rng), arms)
    return np.asarray(arms, dtype=np.int64)


class BetaMarginals:
    """Beta(a, b) per arm, in the form ``max_probabilities`` integrates."""

    def __init__(self, a: FloatArray, b: FloatArray) -> None:
        self.a, self.b = a, b

    def ppf(self, levels: FloatArray) -> FloatArray:
        return np.asarray(special.betaincinv(self.a[..., None], self.b[..., None], levels))

    def logpdf(self, x: FloatArray) -> FloatArray:
        a, b = self.a[..., None], self.b[..., None]
        return np.asarray(
            special.xlogy(a - 1.0, x) + special.xlog1py(b - 1.0, -x) - special.betaln(a, b)
        )

    def logcdf(self, x: FloatArray) -> FloatArray:
        a, b = self.a[..., None, :, None], self.b[..., None, :, None]
        return np.asarray(np.log(special.betainc(a, b, x)))


class ThompsonSampling(Policy):
    """Beta(alpha0, beta0) prior per arm; select draws one posterior sample per arm."""

    name: ClassVar[str] = "thompson"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {
        "alpha0": positive(1.0, doc="prior successes (Beta alpha)"),
        "beta0": positive(1.0, doc="prior failures (Beta beta)"),
    }
    reward_bounds = (0.0, 1.0)

    def posterior(self, stats: Stats) -> tuple[FloatArray, FloatArray]:
        """Beta parameters; n - sum is clipped at 0 against rounding of discounted sums."""
        a = self.params["alpha0"] + stats.total
        b = self.params["beta0"] + np.maximum(stats.n - stats.total, 0.0)
        return a, b

    def greedy_values(self, stats: Stats) -> FloatArray:
        a, b = self.posterior(stats)
        return np.asarray(a / (a + b), dtype=np.float64)

    def greedy_value_one(self, stats: ScalarStats, arm: int) -> float:
        a, b = self._posterior_one(stats, arm)
        return a / (a + b)

    def _posterior_one(self, stats: ScalarStats, arm: int) -> tuple[float, float]:
        total = stats.total[arm]
        failures = stats.n[arm] - total
        return self.params["alpha0"] + total, self.params["beta0"] + (
            failures if failures > 0.0 else 0.0
        )

    def select(
        self, stats: Stats, rng: np.random.Generator, eligible: BoolArray | None = None
    ) -> Selection:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        a, b = self.posterior(stats)
        arms = argmax_of_draws(rng.beta(a, b), mask, eligible is None, rng)
        return Selection(arms, explored_flags(a / (a + b), mask, arms))

    def probabilities(self, stats: Stats, eligible: BoolArray | None = None) -> FloatArray:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        return max_probabilities(BetaMarginals(*self.posterior(stats)), mask)

    def select_one(
        self, stats: ScalarStats, rng: random.Random, eligible: Sequence[int]
    ) -> tuple[int, bool]:
        alpha0, beta0 = self.params["alpha0"], self.params["beta0"]
        counts, totals = stats.n, stats.total
        best_draw, arm, ties = -1.0, eligible[0], 1
        best_mean, chosen_mean = -1.0, -1.0
        for i in eligible:
            total = totals[i]
            failures = counts[i] - total
            a = alpha0 + total
            b = beta0 + (failures if failures > 0.0 else 0.0)
            draw = beta_variate(rng, a, b)
            mean = a / (a + b)
            if mean > best_mean:
                best_mean = mean
            if draw > best_draw:
                best_draw, arm, ties, chosen_mean = draw, i, 1, mean
            elif draw == best_draw:  # only for degenerate draws (exact 0 or 1): uniform ties
                ties += 1
                if rng.random() * ties < 1.0:
                    arm, chosen_mean = i, mean
        return arm, chosen_mean < best_mean
