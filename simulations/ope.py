"""Off-policy estimators: the value of a target policy from decisions another policy made.

All take the logged arms, rewards and propensities plus the target's probability of every
arm at every logged decision (``target``, shape ``(n, arms)``), and return an estimate with
a 95 % confidence interval from the central limit theorem over the n decisions:

* IPS: mean of w_i r_i with w_i = target(a_i) / propensity_i. Unbiased, high variance.
* SNIPS: sum w_i r_i / sum w_i. Slightly biased, bounded by the rewards, less variance;
  interval from the delta method.
* DR: the per-arm reward model's prediction for the target's choice, plus the importance
  weighted residual. Unbiased if either the propensities or the model are right.

All three are unbiased only where the logger could have chosen every arm the target might
choose (support). Given each decision's whole-procedure law (``laws``), ``unsupported_mass``
measures the target's mass on arms the logger could not choose, and ``support_bounds`` gives
an interval for the value over every decision that stays honest without support: IPS over
all decisions estimates the target's value on the arms with support exactly, and the rest is
bounded by the reward range times the unsupported mass (the worst case, in both directions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from simulations.environments import FloatArray, IntArray

#: Warn when the effective sample size falls below this share of the log.
ESS_WARN_SHARE = 0.1
#: Warn when a single decision carries more than this share of the total importance weight.
MAX_WEIGHT_WARN_SHARE = 0.05
#: Target mass on unsupported arms below this counts as none (float noise of a law).
SUPPORT_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Estimate:
    method: str
    value: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    def covers(self, truth: float) -> bool:
        return self.ci_low <= truth <= self.ci_high

    @property
    def refused(self) -> bool:
        """No estimate was given (e.g. too little support); the interval is then infinite."""
        return math.isnan(self.value) and not math.isfinite(self.ci_low)

    def clipped(self, low: float, high: float) -> Estimate:
        """The estimate and its interval within the reward range [low, high]: no policy's
        value can lie outside it, so an interval reaching past it claims nothing more."""
        if self.refused:
            return self
        value = self.value if math.isnan(self.value) else min(max(self.value, low), high)
        return Estimate(
            self.method,
            value,
            min(max(self.ci_low, low), high),
            max(min(self.ci_high, high), low),
            self.n,
        )


def refused(method: str, n: int) -> Estimate:
    return Estimate(method, math.nan, -math.inf, math.inf, n)


@dataclass(frozen=True)
class WeightDiagnostics:
    """How far the target is from the logging policy, seen through the importance weights."""

    n: int
    effective_sample_size: float
    max_weight: float
    mean_weight: float
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _normal_interval(method: str, terms: FloatArray, value: float | None = None) -> Estimate:
    n = terms.shape[0]
    centre = float(terms.mean()) if value is None else value
    if n < 2:
        return Estimate(method, centre, -math.inf, math.inf, n)
    quantile = float(special.stdtrit(n - 1, 0.975))
    half = quantile * float(terms.std(ddof=1)) / math.sqrt(n)
    return Estimate(method, centre, centre - half, centre + half, n)


def mean_estimate(method: str, values: FloatArray) -> Estimate:
    """The plain mean of ``values`` with the same 95 % t-interval as the estimators: e.g. the
    on-policy value of a log (its mean reward), printed beside the off-policy estimates."""
    return _normal_interval(method, np.asarray(values, dtype=np.float64))


def importance_weights(arms: IntArray, propensities: FloatArray, target: FloatArray) -> FloatArray:
    return np.asarray(target[np.arange(arms.shape[0]), arms] / propensities, dtype=np.float64)


def ips(
    arms: IntArray, rewards: FloatArray, propensities: FloatArray, target: FloatArray
) -> Estimate:
    weights = importance_weights(arms, propensities, target)
    return _normal_interval("ips", weights * rewards)


def snips(
    arms: IntArray, rewards: FloatArray, propensities: FloatArray, target: FloatArray
) -> Estimate:
    weights = importance_weights(arms, propensities, target)
    total = float(weights.sum())
    if total <= 0:
        return Estimate("snips", math.nan, -math.inf, math.inf, int(arms.shape[0]))
    value = float((weights * rewards).sum()) / total
    # Delta method: the estimator's influence function is w_i (r_i - V) / mean(w).
    influence = weights * (rewards - value) / weights.mean()
    estimate = _normal_interval("snips", influence, value=0.0)
    return Estimate("snips", value, value + estimate.ci_low, value + estimate.ci_high, estimate.n)


def per_arm_means(arms: IntArray, rewards: FloatArray, n_arms: int) -> FloatArray:
    """The simplest reward model: each arm's mean logged reward (the overall mean if unseen)."""
    counts = np.bincount(arms, minlength=n_arms).astype(np.float64)
    sums = np.bincount(arms, weights=rewards, minlength=n_arms)
    overall = float(rewards.mean()) if rewards.size else 0.0
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), overall)


def doubly_robust(
    arms: IntArray,
    rewards: FloatArray,
    propensities: FloatArray,
    target: FloatArray,
    model: FloatArray | None = None,
) -> Estimate:
    """DR with a reward model: per-arm means (default), or ``model`` (n, arms), the
    predicted reward of every arm at every decision (a contextual model, cross-fitted so
    that no decision's own reward enters its prediction)."""
    if model is None:
        means = per_arm_means(arms, rewards, target.shape[1])
        terms = target @ means + importance_weights(arms, propensities, target) * (
            rewards - means[arms]
        )
        return _normal_interval("dr", terms)
    rows = np.arange(arms.shape[0])
    weights = importance_weights(arms, propensities, target)
    terms = (target * model).sum(axis=1) + weights * (rewards - model[rows, arms])
    return _normal_interval("dr", np.asarray(terms, dtype=np.float64))


def diagnose_weights(
    arms: IntArray, propensities: FloatArray, target: FloatArray
) -> WeightDiagnostics:
    """Effective sample size (sum w)^2 / sum w^2 and warnings when a few weights dominate."""
    weights = importance_weights(arms, propensities, target)
    n = int(weights.shape[0])
    total, squares = float(weights.sum()), float((weights**2).sum())
    ess = total * total / squares if squares > 0 else 0.0
    max_weight = float(weights.max(initial=0.0))
    warnings = []
    if n and ess < ESS_WARN_SHARE * n:
        warnings.append(
            f"effective sample size {ess:.1f} is {ess / n:.1%} of {n} decisions: the target "
            "rarely agrees with the logging policy, intervals may be unreliable"
        )
    if total > 0 and max_weight / total > MAX_WEIGHT_WARN_SHARE:
        smallest = float(propensities[int(np.argmax(weights))])
        warnings.append(
            f"extreme importance weight {max_weight:.1f} (propensity {smallest:.2g}) carries "
            f"{max_weight / total:.1%} of the total weight"
        )
    if n and total == 0:
        warnings.append("the target never chooses a logged arm: IPS is 0 and SNIPS undefined")
    return WeightDiagnostics(
        n, ess, max_weight, float(weights.mean()) if n else 0.0, tuple(warnings)
    )


def unsupported_mass(laws: FloatArray, target: FloatArray) -> FloatArray:
    """Per decision, the target's probability of arms the logger gave probability 0.

    ``laws`` (n, arms) is each decision's whole-procedure law, NaN where unknown: there the
    result is NaN too (support cannot be checked).
    """
    unknown = np.isnan(laws[:, 0])
    mass = np.where(np.nan_to_num(laws) > 0.0, 0.0, target).sum(axis=1)
    mass = np.where(mass <= SUPPORT_TOLERANCE, 0.0, mass)
    return np.asarray(np.where(unknown, np.nan, mass), dtype=np.float64)


def support_bounds(
    arms: IntArray,
    rewards: FloatArray,
    propensities: FloatArray,
    target: FloatArray,
    unsupported: FloatArray,
    reward_range: tuple[float, float],
) -> Estimate:
    """An interval for the target's value over every decision, support or not.

    V = mean_i [sum over supported arms of target * reward + sum over unsupported arms of
    target * reward]. IPS over all decisions estimates the first part without bias (the
    logged arm always has support, and unsupported arms get weight 0); the second lies in
    [low, high] times the mean unsupported mass. So the 95 % interval of IPS, widened by that
    range, covers V whatever the rewards of the unsupported arms. No point value is claimed.
    """
    low, high = reward_range
    mass = float(np.nan_to_num(unsupported).mean()) if unsupported.size else 0.0
    part = ips(arms, rewards, propensities, target)
    return Estimate(
        "bounds", math.nan, part.ci_low + low * mass, part.ci_high + high * mass, part.n
    ).clipped(low, high)
