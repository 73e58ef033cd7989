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

from policies.base import (
    BoolArray,
    FloatArray,
    IntArray,
    ParamSpec,
    argmax_random_ties,
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
    uniform over the eligible arms with the largest mean.
    """
    degenerate = ~(scales > 0.0).all(axis=-1, keepdims=True)
    safe = np.where(degenerate, 1.0, scales)
    law = max_probabilities(NormalMarginals(means, safe), mask)
    if degenerate.any():
        law = np.where(degenerate, tie_probabilities(means, mask), law)
    return np.asarray(law, dtype=np.float64)


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
