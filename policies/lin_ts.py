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
    feature vector is new on almost every Route) takes ``normal_argmax_law_one``, so a
    vectorised call on one state and the live path give the same law.
    """
    if means.ndim == 1:
        eligible = np.flatnonzero(mask).tolist()
        return np.asarray(
            normal_argmax_law_one(means.tolist(), scales.tolist(), eligible), dtype=np.float64
        )
    return _general_normal_argmax_law(means, scales, mask)


def _general_normal_argmax_law(
    means: FloatArray, scales: FloatArray, mask: BoolArray
) -> FloatArray:
    """``normal_argmax_law`` by the general routine, each arm on its own range; degenerate
    rows (a zero scale) are ties."""
    degenerate = ~(scales > 0.0).all(axis=-1, keepdims=True)
    safe = np.where(degenerate, 1.0, scales)
    law = max_probabilities(NormalMarginals(means, safe), mask)
    if degenerate.any():
        law = np.where(degenerate, tie_probabilities(means, mask), law)
    return np.asarray(law, dtype=np.float64)


#: Standard normal quantiles of ``QUADRATURE_LEVELS``: the panel breaks of a normal arm.
_LEVEL_Z: FloatArray = np.asarray(special.ndtri(QUADRATURE_LEVELS), dtype=np.float64)
_LEVEL_Z_FLOATS: tuple[float, ...] = tuple(_LEVEL_Z.tolist())
_Z_LOW, _Z_HIGH = _LEVEL_Z_FLOATS[0], _LEVEL_Z_FLOATS[-1]
_NODES, _WEIGHTS = gauss_legendre(QUADRATURE_NODES)
#: Gauss-Legendre on a panel [a, b]: the nodes at a + (b - a) f, the weights (b - a) h.
_NODE_FRACTIONS: FloatArray = 0.5 * (1.0 + _NODES)
_HALF_WEIGHTS: FloatArray = 0.5 * _WEIGHTS
_SQRT_HALF = math.sqrt(0.5)
#: Equal panels at most this many scales of the narrowest contender wide, when at most
#: ``_EQUAL_PANELS`` of them cover the range (``_contenders_law``).
_EQUAL_WIDTH = 1.5
_EQUAL_PANELS = 32
#: The nodes t of ``_EQUAL_PANELS`` unit panels end to end, above a row of ones, so that one
#: product (a_k, b_k) @ (t; 1) standardises every node for every arm; and their weights.
_EQUAL_NODES: FloatArray = np.vstack(
    [
        (np.arange(_EQUAL_PANELS)[:, None] + _NODE_FRACTIONS).reshape(-1),
        np.ones(_EQUAL_PANELS * QUADRATURE_NODES),
    ]
)
_EQUAL_WEIGHTS: FloatArray = np.tile(_HALF_WEIGHTS, _EQUAL_PANELS)
for _table in (_NODE_FRACTIONS, _HALF_WEIGHTS, _EQUAL_NODES, _EQUAL_WEIGHTS):
    _table.flags.writeable = False


def normal_argmax_law_one(
    means: Sequence[float], scales: Sequence[float], eligible: Sequence[int]
) -> list[float]:
    """The law of one row (a live decision), every arm's, over the listed eligible arms
    (distinct indices): about 2 µs when one or two arms contend, about 20 µs when five do
    (docs/benchmarks.md, ``decision``), where the general routine takes 0.18 ms.

    Rows that are not finite means and finite positive scales go to the general routine.

    **Arms out of the race.** With lo = max_j q_j(1e-12) over the eligible arms (q_j arm j's
    quantile function), an arm j with q_j(1 - 1e-12) < lo is below the arm m that sets lo
    with probability above 1 - 2e-12 (X_j > X_m needs X_j above q_j(1 - 1e-12) or X_m below
    q_m(1e-12)), so P(j) < 2e-12: it gets 0. For a learned model, where a feature vector
    leaves one or two arms in contention, that is most of the work saved.

    **One or two contenders: closed forms.** One contender gets probability 1; it loses
    P(pruned arms) < 2e-12 each. Two, a and b: X_a - X_b is N(mu_a - mu_b, s_a^2 + s_b^2),
    so P(X_a > X_b) = Phi((mu_a - mu_b) / sqrt(s_a^2 + s_b^2)) exactly (one ``math.erfc``
    each, accurate to a relative 1e-15). The law with the pruned arms J differs from it by
    at most P(some j in J beats the larger of X_a, X_b) <= sum_J 2e-12 (each j is below the
    arm that sets lo, which contends, so is a or b, but for 2e-12): below 6e-12 for 5 arms,
    where the quadrature's error is claimed below 1e-9. Tested against ``ndtr``, the general
    routine and QUADPACK over all the arms.

    **Three or more: ``_contenders_law``**, a quadrature on nodes shared by every contender.
    """
    law = [0.0] * len(means)
    if len(eligible) <= 1:
        for k in eligible:
            law[k] = 1.0
        return law
    # Finite means (a NaN fails every comparison; a sum that overflows only sends a finite
    # row to the general routine) and finite positive scales.
    if not (math.isfinite(sum(means)) and min(scales) > 0.0 and math.isfinite(max(scales))):
        mask = np.zeros(len(means), dtype=bool)
        mask[list(eligible)] = True
        general = _general_normal_argmax_law(np.array(means), np.array(scales), mask)
        return [float(p) for p in general]
    # mu + (sigma z), the IEEE operations of the quantile panels' breaks: the same bits.
    low = max([means[k] + scales[k] * _Z_LOW for k in eligible])
    arms = [k for k in eligible if means[k] + scales[k] * _Z_HIGH >= low]
    if len(arms) == 1:
        law[arms[0]] = 1.0
        return law
    if len(arms) == 2:
        a, b = arms
        d = (means[a] - means[b]) / math.hypot(scales[a], scales[b]) * _SQRT_HALF
        if not math.isnan(d):  # inf - inf, or inf / inf: scales near the largest double
            law[a], law[b] = 0.5 * math.erfc(-d), 0.5 * math.erfc(d)
            return law
    mass = _contenders_law([means[k] for k in arms], [scales[k] for k in arms], low)
    for k, p in zip(arms, mass, strict=True):
        law[k] = p
    return law


def _contenders_law(mu: list[float], sigma: list[float], low: float) -> list[float]:
    """The law of the contending arms (two or more), by quadrature on nodes shared by every
    arm; ``low`` is max_k q_k(1e-12) over the eligible arms.

    P(k) = integral of pdf_k(s) prod_{j != k} cdf_j(s) ds. Every arm's integrand is evaluated
    at the same points s, so each arm's CDF and density are computed once per point (2 E
    special-function values per point instead of the general routine's E^2), and
    ``pdf_k prod_{j != k} cdf_j = (pdf_k / cdf_k) prod_j cdf_j``.

    Where the integral is cut: with hi = max_k q_k(1 - 1e-12), below ``low`` the arm j that
    sets it has cdf_j < 1e-12, so every other arm's integrand is below 1e-12 times its
    density there, and arm j's own mass below ``low`` is 1e-12; above hi every arm's density
    has mass below 1e-12. So each P(k) loses at most 2e-12 by integrating over [low, hi]
    only. The arms pruned before (``normal_argmax_law_one``) have cdf_j > 1 - 1e-12 on
    [low, hi], so leaving them out of the products changes each by less than 1e-12 relative.

    The panels, 8 Gauss-Legendre nodes each:

    * **equal panels**, each at most 1.5 scales of the narrowest contender wide, when at most
      32 cover [low, hi]: arms of comparable scales, the usual case (11 panels for the
      benchmark's five arms, where the quantile panels below number about 30). On a panel at
      most 1.5 of its scales wide, every arm's density and CDF are so close to polynomials of
      degree 15 that the law moves by less than 2e-11 when the panels shrink to 0.6 scales;
      against adaptive QUADPACK it is within 1e-10 (tested; measured below 1e-11);
    * otherwise **quantile panels**: every contender's ``QUADRATURE_LEVELS`` quantiles
      inside [low, hi] are the breaks, so a narrow arm inside a wide one is resolved. Inside
      any panel each arm's density and CDF are as smooth as between two of its consecutive
      levels (at most 2.42 of its scales apart), as in the general routine: within 1e-9 of
      adaptive QUADPACK in the tested cases (up to 2.4e-9 on six to eight near-tied arms of
      similar scales, which take equal panels).

    No CDF is 0 at a node, so the ratio needs no guard: every node is at least ``low``, the
    largest 1e-12 quantile of the eligible arms, so at least each contender's own, where its
    standardised value is -7.03 and its CDF 1e-12. Far above an arm's mean its density
    underflows to 0 and its CDF is 1, which is right.
    """
    high = max([m + s * _Z_HIGH for m, s in zip(mu, sigma, strict=True)])
    equal = (high - low) / (_EQUAL_WIDTH * min(sigma))  # NaN or inf: quantile panels
    if equal <= _EQUAL_PANELS:
        panels = math.ceil(equal)
        count = panels * QUADRATURE_NODES
        width = (high - low) / panels
        # Node low + width t standardised for arm k: (width / s_k) t + (low - m_k) / s_k.
        scaled = [(width / s, (low - m) / s) for m, s in zip(mu, sigma, strict=True)]
        z = np.array(scaled) @ _EQUAL_NODES[:, :count]  # (E, N): every arm, every node
        weights = _EQUAL_WEIGHTS[:count]  # times the common width, which cancels
    else:
        breaks = sorted(
            [
                q
                for m, s in zip(mu, sigma, strict=True)
                for z in _LEVEL_Z_FLOATS
                if low <= (q := m + s * z) <= high
            ]
        )  # low and high are among them
        edges = np.array(breaks)
        left = edges[:-1]
        breadth = edges[1:] - left  # 0 for a repeated break: that panel weighs 0
        grid = np.multiply.outer(breadth, _NODE_FRACTIONS)
        grid += left[:, None]
        params = np.array((mu, sigma))
        z = grid.reshape(-1) - params[0, :, None]
        z /= params[1, :, None]
        weights = np.multiply.outer(breadth, _HALF_WEIGHTS).reshape(-1)
    cdf = special.ndtr(z)
    ratio = np.square(z)
    ratio *= -0.5
    np.exp(ratio, out=ratio)  # sigma_k sqrt(2 pi) pdf_k
    ratio /= cdf
    weighted = cdf.prod(axis=0)
    weighted *= weights
    # The common 1 / sqrt(2 pi) cancels below.
    mass = [m / s for m, s in zip((ratio @ weighted).tolist(), sigma, strict=True)]
    total = sum(mass)
    if not (math.isfinite(total) and total > 0.0):
        return [1.0 / len(mu)] * len(mu)
    return [m / total for m in mass]


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

    def _law_one(
        self, means: list[float], widths: list[float], eligible: Sequence[int]
    ) -> list[float]:
        v = self.params["v"]
        return normal_argmax_law_one(means, [v * w for w in widths], eligible)

    def _choose_one(
        self,
        means: Sequence[float],
        widths: Sequence[float],
        eligible: Sequence[int],
        rng: random.Random,
    ) -> int:
        v = self.params["v"]
        return normal_argmax_one(means, [v * w for w in widths], eligible, rng)
