"""The maths behind ``Admin.GetReport``: what operators need to decide whether to stop exploring.

Per arm, from its sufficient statistics and a conjugate prior: the posterior mean, a 95%
equal-tailed credible interval, the probability of being the best arm and the expected loss
of committing to it, plus a one-line recommendation with a documented rule.

The report models rewards, not decisions, so it is the same whichever policy routes traffic:
rewards in [0, 1] use Beta-Bernoulli (fractional rewards as pseudo-counts, like the Thompson
policy), other rewards a Normal model with unknown variance (Normal-Inverse-Gamma prior, so
each mean's posterior is a Student-t). Probabilities of being best reuse the policies'
quadrature (``policies.base.max_probabilities``, the Thompson propensities), so the report
and the router never disagree about them.

Expected loss of arm i is ``E[max_j theta_j - theta_i] = E[max_j theta_j] - E[theta_i]``;
``E[max]`` is integrated by Gauss-Legendre over the same quantile panels:
``E[max] = c + integral_c^d (1 - prod_j F_j(x)) dx`` where ``[c, d]`` spans every eligible
arm's [q(1e-12), q(1 - 1e-12)]. Deterministic (no Monte Carlo noise, so a report does not
flicker between refreshes) and accurate to ~1e-9 for Beta posteriors (tested against Monte
Carlo within its standard error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policies.base import (
    QUADRATURE_LEVELS,
    BoolArray,
    FloatArray,
    Marginals,
    Policy,
    Stats,
    eligible_mask,
    max_probabilities,
)
from policies.gaussian_thompson import StudentMarginals
from policies.thompson import BetaMarginals

#: Gauss-Legendre nodes per panel for E[max]; not a hot path, so twice the policies' count.
EXPECTED_MAX_NODES = 16
#: Readiness rule defaults (see ``recommend``).
PROB_BEST_THRESHOLD = 0.95
RELATIVE_LOSS_THRESHOLD = 0.01


@dataclass(frozen=True)
class BetaModel:
    """Beta(alpha0, beta0) prior on a rate; posterior Beta(alpha0 + sum, beta0 + n - sum)."""

    alpha0: float = 1.0
    beta0: float = 1.0
    name = "beta-bernoulli"

    def posterior(self, stats: Stats) -> tuple[BetaMarginals, FloatArray]:
        a = self.alpha0 + stats.total
        b = self.beta0 + np.maximum(stats.n - stats.total, 0.0)  # rounding of discounted sums
        return BetaMarginals(a, b), np.asarray(a / (a + b), dtype=np.float64)


@dataclass(frozen=True)
class NormalModel:
    """Normal rewards, unknown mean and variance; NIG(mu0, kappa0, alpha0, beta0) prior.

    The marginal posterior of the mean is Student-t with ``2 alpha_n`` degrees of freedom,
    location ``mu_n`` and scale ``sqrt(beta_n / (alpha_n kappa_n))``. Defaults match the
    gaussian_thompson policy.
    """

    mu0: float = 0.0
    kappa0: float = 0.01
    alpha0: float = 1.0
    beta0: float = 1.0
    name = "normal-inverse-gamma"

    def posterior(self, stats: Stats) -> tuple[StudentMarginals, FloatArray]:
        kappa = self.kappa0 + stats.n
        loc = (self.kappa0 * self.mu0 + stats.total) / kappa
        alpha = self.alpha0 + 0.5 * stats.n
        # beta0 + (within-arm SS + kappa0 n (mean - mu0)^2 / kappa_n) / 2, written without a
        # division by n; clipped at beta0 (its exact lower bound) against cancellation.
        beta = self.beta0 + 0.5 * (
            stats.total_sq + self.kappa0 * self.mu0 * self.mu0 - kappa * loc * loc
        )
        beta = np.maximum(beta, self.beta0)
        scale = np.sqrt(beta / (alpha * kappa))
        return StudentMarginals(loc, scale, 2.0 * alpha), np.asarray(loc, dtype=np.float64)


RewardModel = BetaModel | NormalModel


def model_for_policy(
    policy: Policy, reward_bounds: tuple[float, float] | None = None
) -> RewardModel:
    """The reward model matching a policy's prior (and the experiment's reward bounds).

    Beta when rewards live in [0, 1] (the policy's own bounds or the experiment's), with the
    policy's alpha0/beta0 when it has them; otherwise Normal with the policy's NIG prior when
    it has one (gaussian_thompson), else the same weak defaults.
    """
    params = policy.params
    low, high = reward_bounds if reward_bounds is not None else policy.reward_bounds
    if "mu0" not in params and low >= 0.0 and high <= 1.0:
        return BetaModel(params.get("alpha0", 1.0), params.get("beta0", 1.0))
    defaults = NormalModel()
    return NormalModel(
        params.get("mu0", defaults.mu0),
        params.get("kappa0", defaults.kappa0),
        params.get("alpha0", defaults.alpha0),
        params.get("beta0", defaults.beta0),
    )


def expected_max(marginals: Marginals, mask: BoolArray) -> FloatArray:
    """E[max over eligible arms of theta], shape batch; by quadrature of ``1 - prod_j F_j``.

    Panels break at every eligible arm's QUADRATURE_LEVELS quantiles, so a narrow posterior
    inside a wide one is resolved; the integral starts at the smallest q(1e-12), below which
    ``prod_j F_j`` is at most 1e-12.
    """
    quantiles = marginals.ppf(QUADRATURE_LEVELS)  # batch+(K, L)
    flat_mask = np.repeat(mask, len(QUADRATURE_LEVELS), axis=-1)
    flat = quantiles.reshape(*quantiles.shape[:-2], -1)  # batch+(K*L,)
    low = np.min(np.where(flat_mask, flat, np.inf), axis=-1, keepdims=True)
    high = np.max(np.where(flat_mask, flat, -np.inf), axis=-1, keepdims=True)
    breaks = np.sort(np.where(flat_mask, flat, low), axis=-1)
    breaks = np.clip(breaks, low, high)
    nodes, weights = np.polynomial.legendre.leggauss(EXPECTED_MAX_NODES)
    left, right = breaks[..., :-1, None], breaks[..., 1:, None]
    half = 0.5 * (right - left)
    x = (left + half * (1.0 + nodes)).reshape(*breaks.shape[:-1], -1)  # batch+(N,)
    w = (half * weights).reshape(x.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_cdf = marginals.logcdf(x[..., None, None, :])  # batch+(1, K, N)
        log_cdf = np.where(mask[..., None, :, None], log_cdf, 0.0).sum(axis=-2)[..., 0, :]
        survival = -np.expm1(log_cdf)  # 1 - prod_j F_j, without cancellation near 1
    integral = np.where(w > 0, w * survival, 0.0).sum(axis=-1)
    return np.asarray(low[..., 0] + integral, dtype=np.float64)


@dataclass(frozen=True)
class ArmSummary:
    """One row of the report; fills ``ArmReport`` (mean, ci_low, ci_high, prob_best, ...)."""

    arm: str
    n: float
    reward_sum: float
    mean: float
    ci_low: float
    ci_high: float
    prob_best: float
    expected_loss: float
    eligible: bool


@dataclass(frozen=True)
class ExperimentReport:
    arms: tuple[ArmSummary, ...]
    model: str
    credible_level: float
    best_arm: str | None
    ready: bool
    recommendation: str

    def arm(self, name: str) -> ArmSummary:
        for summary in self.arms:
            if summary.arm == name:
                return summary
        raise KeyError(name)


# Rewards every eligible arm needs before the report recommends anything. The posterior of an
# arm with no data is its prior, so "P(best) = 0.995" after one arm got 200 zeros and the other
# nothing says only that the prior mean beats 0. 30 is the usual "large enough for a normal
# approximation of a mean" count; the service uses max(this, the experiment's burn-in).
MIN_REWARDS_PER_ARM = 30


def _floor(value: float, digits: int = 3) -> str:
    """Truncate rather than round, so 0.9996 prints as 0.999, never as a certain 1.000."""
    scale = 10**digits
    return f"{math.floor(value * scale) / scale:.{digits}f}"


def recommend(
    arms: Sequence[ArmSummary],
    *,
    prob_threshold: float = PROB_BEST_THRESHOLD,
    relative_loss: float = RELATIVE_LOSS_THRESHOLD,
    absolute_loss: float = 0.0,
    min_rewards: int = MIN_REWARDS_PER_ARM,
) -> tuple[str | None, bool, str]:
    """(best arm, ready, sentence). The rule, in full:

    Nothing is recommended (no best arm, not ready) while any eligible arm has fewer than
    ``min_rewards`` rewards (``MIN_REWARDS_PER_ARM``, or the experiment's burn-in if larger).
    Among eligible arms the best is the one with the highest probability of being best. It is
    *ready to pin* when that probability is at least ``prob_threshold`` (0.95) **and** its
    expected loss is at most ``max(relative_loss * |posterior mean of the best|,
    absolute_loss)`` (1% of its mean by default; set ``absolute_loss`` for rewards whose mean
    can be near 0). Both are needed: a high probability alone can hide a costly tail when the
    interval is wide, and a tiny loss alone happens when arms are equal (then pinning either
    is harmless but the probability never reaches 0.95, and "keep exploring" is honest).
    """
    eligible = [a for a in arms if a.eligible]
    if not eligible:
        return None, False, "no eligible arm; nothing to recommend"
    short = [a for a in eligible if a.n < max(min_rewards, 1)]
    if short and len(eligible) > 1:
        # No best arm and no probability in the sentence: before every arm has data the
        # probability compares a posterior with a prior, which is not a decision.
        listed = ", ".join(f"{a.arm} ({a.n:.0f})" for a in short)
        return (
            None,
            False,
            f"not enough data: every active arm needs {max(min_rewards, 1)} rewards before a "
            f"recommendation; {listed}; keep exploring",
        )
    best = max(eligible, key=lambda a: (a.prob_best, a.mean))
    if len(eligible) == 1:
        return best.arm, False, f"arm {best.arm} is the only eligible arm; nothing to compare"
    threshold = max(relative_loss * abs(best.mean), absolute_loss)
    ready = best.prob_best >= prob_threshold and best.expected_loss <= threshold
    sentence = (
        f"arm {best.arm} is best with probability {_floor(best.prob_best)}; "
        f"expected loss of choosing it {best.expected_loss:.3g} (threshold {threshold:.3g}); "
        + ("ready to pin" if ready else "keep exploring")
    )
    return best.arm, ready, sentence


def build_report(
    arm_names: Sequence[str],
    stats: Stats,
    model: RewardModel,
    *,
    eligible: Sequence[bool] | None = None,
    credible_level: float = 0.95,
    prob_threshold: float = PROB_BEST_THRESHOLD,
    relative_loss: float = RELATIVE_LOSS_THRESHOLD,
    absolute_loss: float = 0.0,
    min_rewards: int = MIN_REWARDS_PER_ARM,
) -> ExperimentReport:
    """The report of one experiment state (``stats`` of batch shape ``()``).

    Ineligible (disabled) arms still get their mean and interval; their probability of being
    best is 0 and their expected loss is measured against the best *eligible* arm (negative
    when the disabled arm would have been better).
    """
    if stats.batch_shape != ():
        raise ValueError("build_report needs a single state, not a batch")
    if len(arm_names) != stats.n_arms:
        raise ValueError(f"arm_names: expected {stats.n_arms} names, got {len(arm_names)}")
    if not 0.0 < credible_level < 1.0:
        raise ValueError("credible_level: must be in (0, 1)")
    mask = eligible_mask(
        stats.n_arms, None if eligible is None else np.asarray(eligible, dtype=bool)
    )
    marginals, means = model.posterior(stats)
    tail = 0.5 * (1.0 - credible_level)
    interval = marginals.ppf(np.array([tail, 1.0 - tail]))  # (K, 2)
    prob_best = max_probabilities(marginals, mask)
    if isinstance(marginals, StudentMarginals) and bool((marginals.df[mask] <= 1.0).any()):
        loss = np.full(stats.n_arms, math.inf)  # a Student-t with df <= 1 has no mean
    else:
        loss = expected_max(marginals, mask) - means
    summaries = tuple(
        ArmSummary(
            arm=name,
            n=float(stats.n[i]),
            reward_sum=float(stats.total[i]),
            mean=float(means[i]),
            ci_low=float(interval[i, 0]),
            ci_high=float(interval[i, 1]),
            prob_best=float(prob_best[i]),
            # E[max] >= E[theta_i] exactly; quadrature may leave -1e-12 for a dominant arm.
            expected_loss=float(loss[i]) if not mask[i] else max(float(loss[i]), 0.0),
            eligible=bool(mask[i]),
        )
        for i, name in enumerate(arm_names)
    )
    best, ready, sentence = recommend(
        summaries,
        prob_threshold=prob_threshold,
        relative_loss=relative_loss,
        absolute_loss=absolute_loss,
        min_rewards=min_rewards,
    )
    return ExperimentReport(summaries, model.name, credible_level, best, ready, sentence)
