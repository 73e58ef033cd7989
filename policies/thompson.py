"""Beta-Bernoulli Thompson sampling: play each arm with the posterior probability it is best.

Rewards in [0, 1]; a fractional reward counts as a pseudo-count (alpha += r, beta += 1 - r),
which keeps the posterior conjugate and lets discounted (fractional) counts work unchanged.
"""

from __future__ import annotations

import itertools
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
from policies.sampling import (
    chunk_generator,
    chunk_key,
    chunk_rows,
    run_chunks,
    scratch,
    standard_gamma_into,
)

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


#: Gamma variates (two per arm and state) per chunk of a batched ``select``, ~0.6 ms of work.
#: A chunk is ~50 numpy calls, each taking the GIL back: on a 2-core VM the threads' hand-offs
#: cost more than the smaller ``CHUNK_VARIATES`` gains (10,000 runs x 5 arms: 4 chunks were
#: slower on two threads than on one; 2 chunks of 5,000 runs are the fastest). Batches up to
#: 32,768 states x 1 arm, 1,024 x 32 or 1,000 x 10 (a simulation) are one chunk.
SELECT_CHUNK_VARIATES = 1 << 16
#: Fewest draws for which ``beta_draws`` looks for closed-form shapes: below it (a live state
#: of a few arms) the extra passes cost more than they save, and the draw is as before.
CLOSED_FORM_MIN = 64


def beta_draws(
    rng: np.random.Generator, params: FloatArray, gammas: FloatArray, chunked: bool = True
) -> FloatArray:
    """Beta(a, b) draws for ``params`` = stack(a, b), written into ``gammas[0]`` (returned).

    Every element follows the law of ``rng.beta(a, b)`` exactly, by one of two methods:

    * numpy's own: ``Ga / (Ga + Gb)`` from two ``standard_gamma`` draws, or Johnk's algorithm
      where a <= 1 and b <= 1. The gamma draws of all a's and b's are one ``standard_gamma``
      call into a reusable buffer (``chunked``: through ``standard_gamma_into``, whose
      chunks threads may draw side by side; False: from ``rng`` alone, as a chunk of
      ``ThompsonSampling.select`` does on its own thread), and the few elements with
      a, b <= 1 are redrawn with ``beta`` itself.
    * a = 1 or b = 1, the closed-form inverse CDF 1 - W^(1/b) resp. W^(1/a), W = 1 - U in
      (0, 1], written with log1p/expm1 as ``beta_variate`` writes it: one uniform and three
      vectorised passes (~6 ns) instead of two gamma variates (~30 ns). Those are arms
      without successes (or without failures) under the default prior: most arms early on
      and at low conversion rates (84 % in the benchmark's state). Used when about half or
      more of at least CLOSED_FORM_MIN draws qualify: it draws a uniform for every element
      and gathers the others, which below ~40 % cost as much as it saves (measured on 1,024
      and 5,000 states x 5 arms); a live state of a few arms keeps to the gamma ratio.
    """
    a, b = params[0], params[1]
    if a.size >= CLOSED_FORM_MIN:
        one_a = a == 1.0
        one_b = b == 1.0
        count_a = int(np.count_nonzero(one_a))
        count_b = int(np.count_nonzero(one_b))
        if 2 * (count_a + count_b) >= a.size:
            return _beta_closed_form(rng, params, gammas, one_a, one_b, count_b, chunked)
    return _beta_by_gammas(rng, params, gammas, chunked)


def _beta_closed_form(
    rng: np.random.Generator,
    params: FloatArray,
    gammas: FloatArray,
    one_a: BoolArray,
    one_b: BoolArray,
    count_b: int,
    chunked: bool,
) -> FloatArray:
    """``beta_draws`` by inverse CDF where a = 1 (``one_a``) or b = 1 (``one_b``, of which
    ``count_b`` are set), by ``_beta_by_gammas`` elsewhere.

    A uniform for every element first (whole-array passes in place beat gathering the
    qualifying ones when they are many), then the other elements, gathered; so the draw is
    a function of ``rng``'s state and the parameters alone. Batch-sized float temporaries
    live in per-thread scratch (see ``policies.sampling.scratch``).
    """
    a, b = params[0], params[1]
    out: FloatArray = gammas[0]
    spare: FloatArray = gammas[1]  # free until the gathered draws below, which have their own
    rng.random(out=out)
    np.negative(out, out=out)
    np.log1p(out, out=out)  # log W, W = 1 - U: exact near both ends of (0, 1]
    closed = one_a
    if count_b == 0:  # the usual case: a = 1 only, 1 - W^(1/b) = -expm1(log W / b)
        np.divide(out, b, out=out)
    else:  # b = 1 too: W^(1/a) = exp(log W / a); where both are 1 either form is U or W
        closed = one_a | one_b
        np.copyto(spare, a)
        np.copyto(spare, b, where=one_a)  # = a wherever b = 1
        np.divide(out, spare, out=out)
        np.exp(out, out=spare)
    np.expm1(out, out=out)
    np.negative(out, out=out)
    if count_b:
        np.copyto(out, spare, where=one_b)
    others = ~closed
    size = int(np.count_nonzero(others))
    if size:
        buffers = scratch((2 * a.size,), 2, tag="beta_draws")
        sub_params = buffers[0][: 2 * size].reshape(2, size)
        np.compress(others.reshape(-1), a.reshape(-1), out=sub_params[0])
        np.compress(others.reshape(-1), b.reshape(-1), out=sub_params[1])
        sub_gammas = buffers[1][: 2 * size].reshape(2, size)
        out[others] = _beta_by_gammas(rng, sub_params, sub_gammas, chunked)
    return out


def _beta_by_gammas(
    rng: np.random.Generator, params: FloatArray, gammas: FloatArray, chunked: bool
) -> FloatArray:
    """numpy's ``beta`` for every element, into ``gammas[0]`` (see ``beta_draws``)."""
    a, b = params[0], params[1]
    # Some a <= 1 and some b <= 1: numpy's beta would use Johnk for those elements.
    johnk = a.size > 0 and a.min() <= 1.0 and b.min() <= 1.0
    if chunked:
        standard_gamma_into(rng, params.reshape(-1), gammas.reshape(-1))
    else:
        rng.standard_gamma(params.reshape(-1), out=gammas.reshape(-1))
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

        A batch of at most SELECT_CHUNK_VARIATES gamma variates (two per arm and state: a
        live state, the service's pre-drawn block of 1,024 decisions with up to 32 arms, a
        simulation of 1,000 runs x 10 arms) is one ``_select_block`` on the caller's thread
        with ``rng`` itself. A larger batch is split into chunks of whole rows
        (``policies.sampling.chunk_rows``); each chunk's whole step (posterior, Beta draws,
        masked argmax with its tie-breaks, explored flags) is one task with a generator of
        its own (``chunk_generator``), and threads run the tasks side by side, so the whole
        step parallelises, not only its gamma draws. The chunks and their generators follow
        from the batch shape and one word of ``rng``: the choices are the same bit for bit
        for any thread count.

        The law is unchanged, but the random numbers behind it changed twice (same seed,
        other choices than before): batches larger than one chunk draw per row chunk (they
        used to chunk only the gamma variates), and ``beta_draws`` draws a = 1 or b = 1
        arms by inverse CDF when they are about half or more of 64 or more draws.
        """
        shape = stats.n.shape
        n_arms = shape[-1]
        batch = shape[:-1]
        mask = None if eligible is None else eligible_mask(n_arms, eligible, batch)
        if mask is not None and mask.all():
            mask = None  # the service's usual mask: every arm active
        if 2 * stats.n.size <= SELECT_CHUNK_VARIATES or stats.n.size <= n_arms:  # one chunk
            params, gammas = scratch((2, *shape), 2)
            return self._select_block(stats, mask, rng, params, gammas, True)
        rows = math.prod(batch)
        bounds = chunk_rows(rows, 2 * n_arms, SELECT_CHUNK_VARIATES)
        # views for the usual C-contiguous batch
        n, total, total_sq = (
            x.reshape(rows, n_arms) for x in (stats.n, stats.total, stats.total_sq)
        )
        flat_mask = None if mask is None else mask.reshape(rows, n_arms)
        arms = np.empty(rows, dtype=np.int64)
        explored = np.empty(rows, dtype=bool)
        key = chunk_key(rng)
        largest = max(stop - start for start, stop in itertools.pairwise(bounds))

        def chunk(i: int) -> None:
            start, stop = bounds[i], bounds[i + 1]
            # per-thread buffers sized for the largest chunk: one allocation per thread
            params_flat, gammas_flat = scratch((2 * largest * n_arms,), 2)
            size = 2 * (stop - start) * n_arms
            part = self._select_block(
                Stats(n[start:stop], total[start:stop], total_sq[start:stop]),
                None if flat_mask is None else flat_mask[start:stop],
                chunk_generator(rng, key, i),
                params_flat[:size].reshape(2, stop - start, n_arms),
                gammas_flat[:size].reshape(2, stop - start, n_arms),
                False,
            )
            arms[start:stop] = part.arms
            explored[start:stop] = part.explored

        run_chunks(len(bounds) - 1, chunk)
        return Selection(arms.reshape(batch), explored.reshape(batch))

    def _select_block(
        self,
        stats: Stats,
        mask: BoolArray | None,
        rng: np.random.Generator,
        params: FloatArray,
        gammas: FloatArray,
        chunked: bool,
    ) -> Selection:
        """``select`` for one block of states, in the buffers ``params`` and ``gammas``
        (shape ``(2, *stats.n.shape)``, owned by the calling thread); ``chunked`` as in
        ``beta_draws``.

        The posterior is computed once and serves both the draws and the means: a block
        allocates only the arrays it returns.
        """
        a, b = params[0], params[1]
        self.posterior_into(stats, a, b)
        arms = argmax_of_draws(beta_draws(rng, params, gammas, chunked), mask, rng)
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
