"""What a report says about a contextual policy's model: coefficients with intervals, and for
one feature vector each arm's score, interval and probability of being best.

Every arm's model is a Gaussian over its weights with mean theta = P^-1 b (P = lambda I + A,
``policies.contextual``) and covariance s^2 P^-1, where s is the scale the policy's own
decision uses: ``v`` for ``lin_ts`` (it samples x.w from N(x.theta, v^2 x^T P^-1 x)), 1 for
``logistic_ts`` (the Laplace posterior) and for ``lin_ucb`` (the ridge posterior of a
unit-variance model, whose standard deviation its bonus counts in). So a coefficient's 95 %
interval is theta_j +- 1.96 s sqrt((P^-1)_jj), and the score x.theta of a feature vector has
the interval x.theta +- 1.96 s sqrt(x^T P^-1 x). These are intervals of the policy's
posterior: calibrated when its model holds (linear rewards with noise variance s^2 for the
linear policies), not otherwise.

P(best) for x is the probability that the arm's draw from N(x.theta_k, s^2 x^T P_k^-1 x) is
the largest among eligible arms: the scalar marginals the live decision draws from, by the
same quadrature (``normal_argmax_law``). For ``lin_ts`` and ``logistic_ts`` it equals the
decision's propensity for x; ``lin_ucb`` plays the argmax of its index instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from policies.base import BoolArray, FloatArray
from policies.contextual import ContextualPolicy, ContextualStats, check_features
from policies.lin_ts import normal_argmax_law

#: Two-sided 95 % normal quantile.
Z95 = float(special.ndtri(0.975))


def posterior_scale(policy: ContextualPolicy) -> float:
    """s: the posterior covariance is s^2 P^-1 (``v`` for lin_ts, else 1)."""
    return float(policy.params.get("v", 1.0))


@dataclass(frozen=True)
class Coefficients:
    """theta (K, d) and the half-widths of its 95 % intervals (K, d)."""

    estimate: FloatArray
    half_width: FloatArray


@dataclass(frozen=True)
class ContextScores:
    """For one feature vector, per arm: x.theta, half-width of its 95 % interval, P(best)."""

    mean: FloatArray
    half_width: FloatArray
    prob_best: FloatArray


def coefficients(policy: ContextualPolicy, stats: ContextualStats) -> Coefficients:
    """Every arm's theta = P^-1 b with 1.96 s sqrt(diag P^-1) (one state, batch shape ())."""
    theta, root_inv = policy.factors(stats)
    # P^-1 = L^-T L^-1, so (P^-1)_jj is the sum of squares of column j of L^-1.
    variances = (root_inv * root_inv).sum(axis=-2)
    half = Z95 * posterior_scale(policy) * np.sqrt(variances)
    return Coefficients(theta, np.asarray(half, dtype=np.float64))


def context_scores(
    policy: ContextualPolicy, stats: ContextualStats, features: FloatArray, eligible: BoolArray
) -> ContextScores:
    """Scores of every arm for ``features`` as given (not rescaled) and P(best) among the
    ``eligible`` arms (0 for the others); FeatureError naming a bad column."""
    x = check_features(features, stats.dim)
    theta, root_inv = policy.factors(stats)
    mean = theta @ x
    u = root_inv @ x
    width = posterior_scale(policy) * np.sqrt((u * u).sum(axis=-1))
    law = normal_argmax_law(mean, width, np.asarray(eligible, dtype=bool))
    return ContextScores(
        np.asarray(mean, dtype=np.float64), np.asarray(Z95 * width, dtype=np.float64), law
    )
