"""Thompson sampling with a Laplace-approximated logistic regression per arm (Chapelle & Li 2011).

Binary rewards (fractional ones in [0, 1] count as soft labels): P(r = 1 | x) =
sigmoid(x.w_k). The posterior of w_k is approximated by a Gaussian N(m_k, P_k^-1); a decision
draws the scalar x.w_k ~ N(x.m_k, x^T P_k^-1 x) per arm and plays the argmax, so its exact
propensity is the normal quadrature ``lin_ts`` uses.

**What state is kept, and why.** Logistic regression has no finite sufficient statistic: an
exact refit needs every (x, r), and an observation log per arm grows without bound, which a
Redis hash updated by atomic increments cannot hold. Chapelle and Li's online algorithm keeps
a Gaussian posterior instead and, per batch of observations, replaces it by the Laplace
approximation of (old posterior x new likelihoods): a few Newton steps to the new mode, the
Hessian there as the new precision. Replacing the posterior is a read-modify-write, not an
increment. Here each observation's log-likelihood is replaced by its second-order Taylor
expansion at a linearisation point w0 (z = x.w0, p = sigmoid(z), h = p (1 - p)):

    r log p(w) + (1 - r) log(1 - p(w))  ~  const + (r - p + h z) x.w - (h / 2) (x.w)^2

a quadratic in w, so the posterior stays Gaussian with natural parameters that are sums:
precision P = lambda I + A, A = sum h x x^T, and P m = b, b = sum (h z + r - p) x. These are
``ContextualStats`` exactly as for ``lin_ts``, changed by increments that commute, so the
store's atomic-increment and exactly-once rules carry over unchanged. One observation at a
time, from the current mean, this is one Newton step of the Chapelle-Li update (a batch of
one, a full precision rather than a diagonal one, the Hessian taken where the step starts
rather than at the new mode). If every observation were linearised at the batch MAP
estimate the statistics would equal the batch Laplace posterior exactly (tested), since the
gradient vanishes there.

**Refit in the background.** The linearisation point of a reward is the mean of the replica's
prepared model (``increments(model, ...)``); a simulation (``update``) uses the current
mean. The background refit is the refresh of that model: solving P m = b and refactorising
P from the statistics (``prepare``), which moves the linearisation point to the newest
estimate for the rewards that follow. Rewards already folded in keep the point they were
expanded at; their error shrinks as the estimate settles, and with gamma < 1 they are
forgotten. An exact refit from raw data (``laplace_statistics``) is for offline use, e.g.
from the decision log.

``lambda`` = 1: a unit-variance Gaussian prior on each log-odds coefficient.
"""

from __future__ import annotations

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
    argmax_random_ties,
)
from policies.contextual import LAMBDA_SPEC, ContextualPolicy, check_features
from policies.lin_ts import normal_argmax_law, normal_argmax_law_one, normal_argmax_one

#: Newton steps of ``laplace_statistics`` at most, and its stopping tolerance on the step.
NEWTON_STEPS = 100
NEWTON_TOLERANCE = 1e-12


def laplace_statistics(
    features: FloatArray, rewards: FloatArray, lam: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(A, b, MAP) of one arm refitted on all of its data: the batch Laplace approximation.

    Newton's method on the ridge-penalised log-likelihood to the MAP estimate w*, then every
    observation expanded at w*: A = sum h x x^T, b = sum (h z + r - p) x. Then
    (lambda I + A)^-1 b = w* (the gradient vanishes at w*) and lambda I + A is the Hessian
    there, the Laplace posterior's precision.
    """
    x = check_features(features, np.shape(features)[-1])
    r = np.asarray(rewards, dtype=np.float64)
    dim = x.shape[-1]
    w = np.zeros(dim)
    for _ in range(NEWTON_STEPS):
        p = special.expit(x @ w)
        gradient = x.T @ (r - p) - lam * w
        hessian = (x.T * (p * (1.0 - p))) @ x + lam * np.eye(dim)
        step = np.linalg.solve(hessian, gradient)
        w = w + step
        if np.abs(step).max() <= NEWTON_TOLERANCE * (1.0 + np.abs(w).max()):
            break
    z = x @ w
    p = special.expit(z)
    h = p * (1.0 - p)
    return (x.T * h) @ x, x.T @ (h * z + r - p), w


class LogisticThompsonSampling(ContextualPolicy):
    """Laplace-approximated Bayesian logistic regression per arm; Thompson on x.w_k."""

    name: ClassVar[str] = "logistic_ts"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {"lambda": LAMBDA_SPEC}
    reward_bounds = (0.0, 1.0)
    linearised = True

    def _working(
        self, rewards: FloatArray, x: FloatArray, theta: FloatArray | None
    ) -> tuple[FloatArray, FloatArray]:
        """(h, h z + r - p) at z = x.theta: the quadratic expansion of the log-likelihood."""
        if theta is None:
            raise ValueError("logistic_ts needs the linearisation point")
        z = (x * theta).sum(axis=-1)
        p = special.expit(z)
        h = p * (1.0 - p)
        return np.asarray(h, dtype=np.float64), np.asarray(h * z + rewards - p, dtype=np.float64)

    def _choose(
        self, means: FloatArray, widths: FloatArray, mask: BoolArray, rng: np.random.Generator
    ) -> IntArray:
        return argmax_random_ties(means + widths * rng.standard_normal(means.shape), mask, rng)

    def _law(self, means: FloatArray, widths: FloatArray, mask: BoolArray) -> FloatArray:
        return normal_argmax_law(means, widths, mask)

    def _law_one(
        self, means: list[float], widths: list[float], eligible: Sequence[int]
    ) -> list[float]:
        return normal_argmax_law_one(means, widths, eligible)

    def _choose_one(
        self,
        means: Sequence[float],
        widths: Sequence[float],
        eligible: Sequence[int],
        rng: random.Random,
    ) -> int:
        return normal_argmax_one(means, widths, eligible, rng)
