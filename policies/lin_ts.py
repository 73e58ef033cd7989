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
    # One row with finite means and finite positive scales (a NaN fails every comparison; a
    # sum that overflows only sends a finite row to the general routine). Three reductions:
    # the six of isfinite/all pairs were a tenth of a live law's cost.
    if (
        means.ndim == 1
        and math.isfinite(float(means.sum()))
        and float(scales.min()) > 0.0
        and math.isfinite(float(scales.max()))
    ):
        return _normal_argmax_law_one(means, scales, mask)
    degenerate = ~(scales > 0.0).all(axis=-1, keepdims=True)
    safe = np.where(degenerate, 1.0, scales)
    law = max_probabilities(NormalMarginals(means, safe), mask)
    if degenerate.any():
        law = np.where(degenerate, tie_probabilities(means, mask), law)
    return np.asarray(law, dtype=np.float64)


#: Standard normal quantiles of ``QUADRATURE_LEVELS``: the panel breaks of a normal arm.
_LEVEL_Z: FloatArray = np.asarray(special.ndtri(QUADRATURE_LEVELS), dtype=np.float64)


def _normal_argmax_law_one(means: FloatArray, scales: FloatArray, mask: BoolArray) -> FloatArray:
    """The law of one row (a live decision) on nodes shared by every arm, in about 40 µs
    where the general routine takes 0.18 ms (d = 16, 5 arms: it is the largest single cost
    of a contextual Route; docs/benchmarks.md).

    P(k) = integral of pdf_k(s) prod_{j != k} cdf_j(s) ds. Every arm's integrand is evaluated
    at the same points s, so each arm's CDF and density are computed once per point (2 E
    special-function values per point instead of the general routine's E^2), and
    ``pdf_k prod_{j != k} cdf_j = (pdf_k / cdf_k) prod_j cdf_j``.

    Where the integral is cut: with lo = max_j q_j(1e-12) and hi = max_j q_j(1 - 1e-12)
    (q_j arm j's quantile function), below lo the arm j that sets lo has cdf_j < 1e-12, so
    every other arm's integrand is below 1e-12 times its density there, and arm j's own mass
    below lo is 1e-12; above hi every arm's density has mass below 1e-12. So each P(k) loses
    at most 2e-12 by integrating over [lo, hi] only.

    The panels: every arm's ``QUADRATURE_LEVELS`` quantiles inside [lo, hi], 8 Gauss-Legendre
    nodes each. Each arm's own quantiles are panel breaks, so inside any panel each arm's
    density and CDF are as smooth as between two of its consecutive levels (at most 2.42 of
    its scales apart), as in the general routine: both are within 1e-9 of adaptive QUADPACK
    (tested), and they agree to about 1e-11.

    Arms out of the race are left out: an arm j with q_j(1 - 1e-12) < lo is below the arm
    that sets lo with probability above 1 - 2e-12, so P(j) < 2e-12 (it gets 0), and on
    [lo, hi] its cdf_j exceeds 1 - 1e-12, so leaving it out of the others' products changes
    each of them by less than 1e-12 relative. For a learned model, where a feature vector
    leaves one or two arms in contention, that is most of the work saved.

    Where cdf_k underflows to 0 (z_k < -38), so has pdf_k, and prod_j cdf_j is 0: that point
    adds nothing to any arm, which the division below keeps (it skips those points).
    """
    eligible = np.flatnonzero(mask)
    count = len(eligible)
    law = np.zeros(len(means), dtype=np.float64)
    if count <= 1:
        law[eligible] = 1.0
        return law
    mu, sigma = means[eligible, None], scales[eligible, None]
    quantiles = mu + sigma * _LEVEL_Z  # (E, L)
    low = quantiles[:, 0].max()
    contending = quantiles[:, -1] >= low  # the arm that sets low is one
    if not contending.all():  # a learned model: some arms are out of the race for this x
        eligible, mu, sigma = eligible[contending], mu[contending], sigma[contending]
        quantiles = quantiles[contending]
        if len(eligible) == 1:
            law[eligible] = 1.0
            return law
    high = quantiles[:, -1].max()
    breaks = np.sort(quantiles, axis=None)
    breaks = breaks[(breaks >= low) & (breaks <= high)]  # low and high are among them
    nodes, weights = gauss_legendre(QUADRATURE_NODES)
    left = breaks[:-1, None]
    half = 0.5 * (breaks[1:, None] - left)  # 0 for a repeated break: that panel weighs 0
    z = ((left + half * (1.0 + nodes)).ravel() - mu) / sigma  # (E, N): every arm, every node
    cdf = special.ndtr(z)
    ratio = np.exp(-0.5 * z * z)  # sigma_k sqrt(2 pi) pdf_k, divided by cdf_k next
    np.divide(ratio, cdf, out=ratio, where=cdf > 0.0)
    weighted = cdf.prod(axis=0) * (half * weights).ravel()
    mass = (ratio @ weighted) / sigma[:, 0]  # the common 1 / sqrt(2 pi) cancels below
    total = mass.sum()
    law[eligible] = mass / total if np.isfinite(total) and total > 0 else 1.0 / count
    return law


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
