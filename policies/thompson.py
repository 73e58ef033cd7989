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
from policies.sampling import scratch, standard_gamma_into

_LN4 = math.log(4.0)
_INF = math.inf
_exp, _expm1, _log, _log1p, _sqrt = math.exp, math.expm1, math.log, math.log1p, math.sqrt
_ONE_PLUS_LN5 = 1.0 + math.log(5.0)


def beta_variate(rng: random.Random, a: float, b: float) -> float:
    """One Beta(a, b) draw in pure Python, exact for every a, b > 0.

    a = 1 or b = 1 (an arm without successes or without failures under the default prior,
    common early on and at low conversion rates) has the closed-form inverse CDF
    1 - W^(1/b) resp. W^(1/a), W = 1 - U in (0, 1]: one uniform, written with log1p/expm1
    so that neither end loses precision. a, b > 1 use Cheng's (1978) algorithm BB: two
    uniforms and usually no logarithm, twice as fast as ``random.betavariate`` (two gamma
    draws), with exact squeeze constants (ln 4, 1 + ln 5) rather than Cheng's 7-digit ones.
    Other shapes fall back to the stdlib, which is exact too.
    """
    if a == 1.0:
        return -_expm1(_log1p(-rng.random()) / b)
    if b == 1.0:
        return _exp(_log1p(-rng.random()) / a)
    if a < 1.0 or b < 1.0:
        return rng.betavariate(a, b)
    if a <= b:
        small, large = a, b
    else:
        small, large = b, a
    alpha = small + large
    beta = _sqrt((alpha - 2.0) / (2.0 * small * large - alpha))
    gamma = small + 1.0 / beta
    uniform, log, exp = rng.random, _log, _exp
    while True:
        u1 = uniform()
        if u1 <= 0.0:
            continue
        u2 = uniform()
        # beta <= 1 for a, b > 1 and 1 - u1 >= 2^-53, so v <= 37: exp cannot overflow.
        v = beta * log(u1 / (1.0 - u1))
        w = small * exp(v)
        z = u1 * u1 * u2
        r = gamma * v - _LN4
        s = small + r - w
        if s + _ONE_PLUS_LN5 >= 5.0 * z:
            break
        t = log(z) if z > 0.0 else -_INF
        if s > t or r + alpha * log(alpha / (large + w)) >= t:
            break
    return w / (large + w) if small == a else large / (large + w)


def beta_draws(rng: np.random.Generator, params: FloatArray, gammas: FloatArray) -> FloatArray:
    """Beta(a, b) draws for ``params`` = stack(a, b), written into ``gammas[0]`` (returned).

    numpy's ``beta`` is ``Ga / (Ga + Gb)`` from two ``standard_gamma`` draws unless a <= 1 and
    b <= 1, where it uses Johnk's algorithm. Here the gamma draws of all a's and b's are one
    ``standard_gamma`` call into a reusable buffer (chunked, and threaded when large: see
    ``policies.sampling``), and the few elements with a, b <= 1 are redrawn with ``beta``
    itself, so every element follows numpy's own algorithm for its shapes: the law of
    ``rng.beta(a, b)`` exactly, in fewer passes and no batch-sized allocation.
    """
    a, b = params[0], params[1]
    # Some a <= 1 and some b <= 1: numpy's beta would use Johnk for those elements.
    johnk = a.size > 0 and a.min() <= 1.0 and b.min() <= 1.0
    standard_gamma_into(rng, params.reshape(-1), gammas.reshape(-1))
    ga: FloatArray = gammas[0]
    gb: FloatArray = gammas[1]
    np.add(gb, ga, out=gb)
    if not johnk:
        np.divide(ga, gb, out=ga)
        return ga
    with np.errstate(invalid="ignore"):  # 0/0 needs both gammas to underflow: redrawn below
        np.divide(ga, gb, out=ga)
    small = (a <= 1.0) & (b <= 1.0)
    if small.any():
        ga[small] = rng.beta(a[small], b[small])
    return ga


def argmax_of_draws(
    draws: FloatArray, mask: BoolArray | None, rng: np.random.Generator
) -> IntArray:
    """Argmax of continuous posterior draws: ties need care only for saturated draws.

    Two Beta draws tie with probability ~2^-52 unless they underflow to exactly 0 or round
    to 1 (tiny shape parameters); only those rows go through uniform tie-breaking. Two
    reductions over the raw draws rule that out for the whole batch at once, which is nearly
    always. ``draws`` is overwritten with -inf on ineligible arms (``mask`` None: all eligible).
    """
    maybe_saturated = draws.size > 0 and (draws.min() <= 0.0 or draws.max() >= 1.0)
    if mask is not None:
        np.copyto(draws, -np.inf, where=~mask)
    arms = np.argmax(draws, axis=-1)
    if maybe_saturated:
        best = np.take_along_axis(draws, arms[..., None], axis=-1)[..., 0]
        saturated = (best <= 0.0) | (best >= 1.0)
        if saturated.any():
            eligible = np.ones(draws.shape, dtype=bool) if mask is None else mask
            arms = np.where(saturated, argmax_random_ties(draws, eligible, rng), arms)
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
        a = np.empty(stats.n.shape, dtype=np.float64)
        b = np.empty(stats.n.shape, dtype=np.float64)
        self.posterior_into(stats, a, b)
        return a, b

    def posterior_into(self, stats: Stats, a: FloatArray, b: FloatArray) -> None:
        """``posterior`` written into ``a`` and ``b``, so a batched step allocates nothing."""
        np.add(stats.total, self.params["alpha0"], out=a)
        np.subtract(stats.n, stats.total, out=b)
        np.maximum(b, 0.0, out=b)
        np.add(b, self.params["beta0"], out=b)

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
        """One posterior draw per arm, argmax; ``explored`` from the posterior means.

        The posterior is computed once, into per-thread scratch buffers, and serves both the
        draws and the means: a batched step allocates only the arrays it returns.
        """
        shape = stats.n.shape
        mask = None if eligible is None else eligible_mask(shape[-1], eligible, shape[:-1])
        if mask is not None and mask.all():
            mask = None  # the service's usual mask: every arm active
        params, gammas = scratch((2, *shape), 2)
        a, b = params[0], params[1]
        self.posterior_into(stats, a, b)
        arms = argmax_of_draws(beta_draws(rng, params, gammas), mask, rng)
        means = gammas[1]  # free again: the draws are in gammas[0]
        np.add(a, b, out=means)
        np.divide(a, means, out=means)
        if mask is not None:
            np.copyto(means, -np.inf, where=~mask)
        return Selection(arms, explored_flags(means, None, arms))

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
