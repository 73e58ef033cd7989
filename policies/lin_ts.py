"""Linear Thompson sampling (Agrawal and Goyal 2013): Bayesian linear regression per arm.

Arm k's reward is modelled as x.w_k plus noise; with the ridge prior the posterior of w_k is
N(theta_k, v^2 P_k^-1), P_k = lambda I + A_k, theta_k = P_k^-1 b_k (``policies.contextual``
says why (A, b) suffice). A decision draws w_k from it and plays the argmax of x.w_k; only
the scalar x.w_k matters, and it is N(x.theta_k, v^2 x^T P_k^-1 x), so the draw is one
normal per arm and the propensity is the one-dimensional quadrature of plain Thompson
sampling over normal marginals.

``v`` is the posterior scale: the reward noise's standard deviation in the Bayesian reading.
Agrawal and Goyal's v = R sqrt(24 d ln(1/delta) / epsilon) proves a bound but explores far
too much; simulations here (docs/policies.md, "Contextual policies") learn the
three-segment problem with v up to 2 and struggle from v = 3. The default v = 0.5 is the
largest standard deviation a reward in [0, 1] can have, so for 0/1 and [0, 1] rewards the
posterior is never narrower than the data justify; scale v with the reward for other units.
``lambda`` = 1 is a unit-variance prior on each coefficient of features of order 1.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
from scipy import special

from policies.base import (
    QUADRATURE_LEVELS,
    QUADRATURE_NODES,
    BoolArray,
    FloatArray,
    IntArray,
    ParamSpec,
    argmax_random_ties,
    gauss_legendre,
    max_probabilities,
    positive,
    tie_probabilities,
)
from policies.contextual import LAMBDA_SPEC, ContextualPolicy, NormalMarginals


def normal_argmax_one(
    means: Sequence[float],
    scales: Sequence[float],
    eligible: Sequence[int],
    rng: random.Random,
) -> int:
    """Argmax over eligible arms of one N(mean, scale^2) draw each, ties uniform.

    Draws tie only when they are all exact (x = 0: every scale is 0), so ties are rare and
    cheap. ``normalvariate`` rather than ``gauss``: the latter keeps a second value between
    calls, which two threads sharing ``rng`` could both receive.
    """
    normal = rng.normalvariate
    best, arm, ties = -math.inf, eligible[0], 1
    for i in eligible:
        draw = means[i] + scales[i] * normal(0.0, 1.0)
        if draw > best:
            best, arm, ties = draw, i, 1
        elif draw == best:
            ties += 1
            if rng.random() * ties < 1.0:
                arm = i
    return arm


def normal_argmax_law(means: FloatArray, scales: FloatArray, mask: BoolArray) -> FloatArray:
    """P(arm's N(mean, scale^2) draw is the largest eligible one), by quadrature.

    Rows with a zero scale (features all 0: every arm scores exactly its mean, 0) are ties,
    uniform over the eligible arms with the largest mean. One row (a live decision, whose
    feature vector is new on almost every Route) takes ``_normal_argmax_law_one``.
    """
    live = means.ndim == 1 and np.isfinite(means).all() and np.isfinite(scales).all()
    if live and (scales > 0.0).all():
        return _normal_argmax_law_one(means, scales, mask)
    degenerate = ~(scales > 0.0).all(axis=-1, keepdims=True)
    safe = np.where(degenerate, 1.0, scales)
    law = max_probabilities(NormalMarginals(means, safe), mask)
    if degenerate.any():
        law = np.where(degenerate, tie_probabilities(means, mask), law)
    return np.asarray(law, dtype=np.float64)


#: Standard normal quantiles of ``QUADRATURE_LEVELS``: the panel breaks of a normal arm.
_LEVEL_Z: FloatArray = np.asarray(special.ndtri(QUADRATURE_LEVELS), dtype=np.float64)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _normal_argmax_law_one(means: FloatArray, scales: FloatArray, mask: BoolArray) -> FloatArray:
    """``max_probabilities(NormalMarginals(means, scales), mask)`` for one row, with the same
    panels, nodes and weights, in about 0.13 ms instead of 0.18 (d = 16, 5 arms: it is the
    largest single cost of a contextual Route; docs/benchmarks.md).

    The general routine evaluates every arm's log CDF at every arm's nodes, K x K x N values,
    then masks the diagonal and the ineligible arms and adds logs. Here only the E (E - 1)
    eligible off-diagonal pairs are evaluated, and the CDFs are multiplied rather than their
    logs added: the same integrand, which differs from the general routine's by rounding
    (below 1e-15; tested), and underflows to 0 exactly where that one's exp does.
    """
    eligible = np.flatnonzero(mask)
    count = len(eligible)
    law = np.zeros(len(means), dtype=np.float64)
    if count == 0:
        return law
    mu, sigma = means[eligible], scales[eligible]
    quantiles = mu[:, None] + sigma[:, None] * _LEVEL_Z  # (E, L)
    breaks = np.sort(np.clip(quantiles.reshape(1, -1), quantiles[:, :1], quantiles[:, -1:]))
    nodes, weights = gauss_legendre(QUADRATURE_NODES)
    left, right = breaks[:, :-1, None], breaks[:, 1:, None]
    half = 0.5 * (right - left)
    x = (left + half * (1.0 + nodes)).reshape(count, -1)  # (E, N): arm i's nodes
    w = (half * weights).reshape(x.shape)
    z = (x - mu[:, None]) / sigma[:, None]
    integrand = np.exp(-0.5 * z * z) / (sigma[:, None] * _SQRT_2PI)
    if count > 1:
        others = _others(count)  # (E, E - 1): the arms j != i of each row i
        with np.errstate(over="ignore", invalid="ignore"):
            cdf = special.ndtr((x[:, None, :] - mu[others][:, :, None]) / sigma[others][:, :, None])
        integrand = integrand * cdf.prod(axis=1)
    mass = np.where(w > 0, w * integrand, 0.0).sum(axis=-1)
    mass = np.where(np.isfinite(mass), mass, 0.0)
    total = mass.sum()
    law[eligible] = mass / total if total > 0 else 1.0 / count
    return law


@functools.lru_cache(maxsize=64)
def _others(count: int) -> IntArray:
    """For ``count`` eligible arms, row i lists the positions j != i (read-only)."""
    others = np.nonzero(~np.eye(count, dtype=bool))[1].reshape(count, count - 1)
    others.flags.writeable = False
    return np.asarray(others, dtype=np.intp)


class LinearThompsonSampling(ContextualPolicy):
    """Per-arm Bayesian linear regression; one posterior draw of x.w_k per arm, argmax."""

    name: ClassVar[str] = "lin_ts"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {
        "v": positive(0.5, doc="posterior scale: the sampled score is N(x.theta, v^2 x'P^-1 x)"),
        "lambda": LAMBDA_SPEC,
    }

    def _choose(
        self, means: FloatArray, widths: FloatArray, mask: BoolArray, rng: np.random.Generator
    ) -> IntArray:
        draws = means + self.params["v"] * widths * rng.standard_normal(means.shape)
        return argmax_random_ties(draws, mask, rng)

    def _law(self, means: FloatArray, widths: FloatArray, mask: BoolArray) -> FloatArray:
        return normal_argmax_law(means, self.params["v"] * widths, mask)

    def _choose_one(
        self,
        means: Sequence[float],
        widths: Sequence[float],
        eligible: Sequence[int],
        rng: random.Random,
    ) -> int:
        v = self.params["v"]
        return normal_argmax_one(means, [v * w for w in widths], eligible, rng)
