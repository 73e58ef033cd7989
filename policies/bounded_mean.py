"""Anytime-valid one-sided tests of a bounded mean from its count and sum alone.

Observations y_1, y_2, ... lie in [0, 1]; the service keeps only n (the count) and s (the
sum). Two questions are asked of them, each with error probability at most alpha however
often they are asked (after every observation, for ever):

- *above*: is the mean above theta0? (reject H0: E[y_i | past] <= theta0 for every i)
- *below*: is the mean below theta0? (reject H0: E[y_i | past] >= theta0 for every i)

**The supermartingale.** For t in (theta0, 1] let
f_t(y) = (t / theta0)^y ((1 - t) / (1 - theta0))^(1 - y). It is the likelihood ratio of
Bernoulli(t) to Bernoulli(theta0) when y is 0 or 1, and convex in y, so on [0, 1]
f_t(y) <= 1 + y (f_t(1) - 1) + (1 - y) (f_t(0) - 1); taking expectations with
E[y | past] = m gives E[f_t(y) | past] <= m t / theta0 + (1 - m)(1 - t) / (1 - theta0),
which is 1 at m = theta0 and increases with m (t > theta0). So under H0 (m <= theta0 at every
step, whatever the law of y in [0, 1]) L_n(t) = prod_i f_t(y_i) is a nonnegative
supermartingale with L_0 = 1: every y in [0, 1] is "sub-Bernoulli" (Hoeffding's convexity
argument, as in Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform Chernoff bounds via
nonnegative supermartingales", Probab. Surveys 17, 2020, and "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist. 49(2), 2021). For binary y it is the
betting wealth 1 + lambda (y - theta0) of Waudby-Smith and Ramdas, "Estimating means of
bounded random variables by betting", JRSS B 86(1), 2024 (arXiv 2020), with lambda fixed;
for y strictly inside (0, 1) it is smaller than that wealth, still valid.

L_n(t) depends on the data only through (n, s): L_n(t) = (t / theta0)^s ((1 - t) /
(1 - theta0))^(n - s). A mixture over t of supermartingales is one too (Fubini), so with a
prior pi on (theta0, 1],

    M_n = int L_n(t) pi(dt),   M_0 = 1,

and Ville's inequality gives P(sup_n M_n >= 1 / alpha) <= alpha under H0: the test "M_n >=
1 / alpha" may be checked after every observation. With pi the Beta(a, b) law truncated to
(theta0, 1] the integral is closed form:

    log M_n = -s log theta0 - (n - s) log(1 - theta0)
              + log B(a + s, b + n - s) - log B(a, b)
              + log Q(a + s, b + n - s; theta0) - log Q(a, b; theta0),

with Q the regularised upper incomplete beta function (Q(a, b; x) = I(b, a; 1 - x)). The
*below* test is the mirror image: the prior truncated to [0, theta0) and the lower function
(``betainc``). Since the Bernoulli likelihood ratio L_n(t) exceeds 1 only for t between
theta0 and the maximum-likelihood value, the two mixtures are never both above 1: the tests
never reach opposite verdicts at once.

The truncation is what makes the test one-sided and valid for the whole composite H0: for
t < theta0, f_t is a supermartingale factor only when m >= theta0.

**The prior.** Beta(k theta0, k (1 - theta0)): centred on the boundary, worth k =
``PRIOR_SAMPLES`` = 2 pseudo-observations. log M_n is about n KL(mean, theta0) - (1/2) log n
+ log pi(mean) + O(1), so the prior's density at the true mean is what a decision costs
beyond the information-theoretic minimum. With k theta0 < 1 the density on [0, theta0) is
close to t^(k theta0 - 1), nearly flat in log t, and on (theta0, 1] it decays like t^-(1 - k
theta0): SLO violations and recoveries come in multiples of the threshold (2x, 10x the allowed
error rate), and this prior pays about the same for each multiple. A larger k concentrates
the prior at theta0: faster near the boundary, slower on clear-cut cases; a smaller k the
reverse. k = 2 was chosen by simulating the time to a verdict for k in {1, 2, 10} and for the
uniform and Jeffreys priors, over theta0 in {0.01, 0.05, 0.2, 0.5} and true means from 0 to
6 theta0: it was never far from the best of them. With it, at alpha = 0.05 and theta0 = 0.05
(``samples_to_verdict``, checked by simulation in tests/test_guardrails_maths.py): a true
rate of 0.3 trips within 53 observations in 99% of streams, a true rate of 0.1 within 819; a
perfect arm recovers after 62, one at 0.01 within 518 in 99% of streams. The floor is
set by the data, not the prior: a verdict needs M_n >= 1 / alpha, and M_n <= max_t L_n(t),
so even a perfect arm needs n >= log(1 / alpha) / -log(1 - theta0) observations to be
declared below theta0 (59 at theta0 = 0.05, 299 at 0.01, 2995 at 0.001, alpha = 0.05).

Validity holds for any prior; the choice moves only the time to a verdict. Using the sum of
squares as well (an empirical-Bernstein mixture) would decide faster for low-variance
continuous y, at the price of a second statistic per rule; rates and quantile exceedances are
binary, where the convexity bound costs nothing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from policies.base import FloatArray

#: Pseudo-observations of the Beta prior centred on theta0 (module docstring).
PRIOR_SAMPLES = 2.0


def _prior(theta0: FloatArray) -> tuple[FloatArray, FloatArray]:
    return PRIOR_SAMPLES * theta0, PRIOR_SAMPLES * (1.0 - theta0)


def _bernoulli_mixture(
    n: ArrayLike, s: ArrayLike, theta0: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    n_ = np.asarray(n, dtype=np.float64)
    th = np.asarray(theta0, dtype=np.float64)
    s_ = np.clip(np.asarray(s, dtype=np.float64), 0.0, n_)  # float sums may overshoot by an ulp
    a, b = _prior(th)
    base = -special.xlogy(s_, th) - special.xlogy(n_ - s_, 1.0 - th)
    base = base + special.betaln(a + s_, b + n_ - s_) - special.betaln(a, b)
    return base, a + s_, b + n_ - s_, a, b


def log_evidence_above(n: ArrayLike, s: ArrayLike, theta0: ArrayLike) -> FloatArray:
    """log M_n against H0: mean <= theta0 (broadcasts over any shape; -inf for no evidence
    at all). ``n`` observations in [0, 1] summing to ``s``; theta0 in (0, 1)."""
    base, a_post, b_post, a, b = _bernoulli_mixture(n, s, theta0)
    th = np.asarray(theta0, dtype=np.float64)
    with np.errstate(divide="ignore"):
        # I_{1-x}(b, a) is the upper tail: 10x faster than betaincc in scipy 1.17, same values
        tail = np.log(special.betainc(b_post, a_post, 1.0 - th)) - np.log(
            special.betainc(b, a, 1.0 - th)
        )
    return np.asarray(base + tail, dtype=np.float64)


def log_evidence_below(n: ArrayLike, s: ArrayLike, theta0: ArrayLike) -> FloatArray:
    """log M_n against H0: mean >= theta0 (the mirror of ``log_evidence_above``)."""
    base, a_post, b_post, a, b = _bernoulli_mixture(n, s, theta0)
    th = np.asarray(theta0, dtype=np.float64)
    with np.errstate(divide="ignore"):
        tail = np.log(special.betainc(a_post, b_post, th)) - np.log(special.betainc(a, b, th))
    return np.asarray(base + tail, dtype=np.float64)


def fewest_samples_below(theta0: float, alpha: float) -> int:
    """The fewest observations after which any data (all zeros) can show mean < theta0 at
    level alpha: M_n <= (1 - theta0)^-n (module docstring)."""
    return int(np.ceil(np.log(1.0 / alpha) / -np.log1p(-theta0)))


def critical_sum(n: int, theta0: float, alpha: float, direction: str) -> int | None:
    """For binary y: the least number of ones among ``n`` that reaches the ``above`` verdict
    (log M_n is increasing in s), or the most that reaches ``below`` (decreasing in s);
    None when no count reaches it. Binary search over s."""
    level = np.log(1.0 / alpha)
    if direction == "above":
        if log_evidence_above(n, n, theta0) < level:
            return None
        lo, hi = 0, n  # invariant: hi reaches the verdict
        while lo < hi:
            mid = (lo + hi) // 2
            if log_evidence_above(n, mid, theta0) >= level:
                hi = mid
            else:
                lo = mid + 1
        return hi
    if direction != "below":
        raise ValueError(f"direction: {direction!r} is not above or below")
    if log_evidence_below(n, 0, theta0) < level:
        return None
    lo, hi = 0, n  # invariant: lo reaches the verdict
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if log_evidence_below(n, mid, theta0) >= level:
            lo = mid
        else:
            hi = mid - 1
    return lo


def verdict_probability(n: int, theta0: float, alpha: float, mean: float, direction: str) -> float:
    """A lower bound on P(verdict reached by observation n) for Bernoulli(``mean``) data: the
    probability that the verdict holds *at* n (binomial tail beyond ``critical_sum``)."""
    k = critical_sum(n, theta0, alpha, direction)
    if k is None:
        return 0.0
    if direction == "above":  # P(S_n >= k) = I_mean(k, n - k + 1)
        return 1.0 if k == 0 else float(special.betainc(k, n - k + 1, mean))
    if k >= n:  # P(S_n <= k) = I_{1 - mean}(n - k, k + 1)
        return 1.0
    return float(special.betainc(n - k, k + 1, 1.0 - mean))


def samples_to_verdict(
    theta0: float,
    mean: float,
    alpha: float,
    direction: str,
    probability: float = 0.99,
    min_samples: int = 1,
    limit: int = 10**7,
) -> int | None:
    """A number of Bernoulli(``mean``) observations within which the ``direction`` verdict
    is reached with at least ``probability`` (conservative: it is reached *at* that number
    with that probability, so by it with at least as much). Exponential then binary search,
    every returned value checked; None if not found below ``limit``."""

    def enough(n: int) -> bool:
        return verdict_probability(n, theta0, alpha, mean, direction) >= probability

    hi = max(1, min_samples)
    while not enough(hi):
        if hi >= limit:
            return None
        hi = min(2 * hi, limit)
    lo = max(1, min_samples, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi if enough(hi) else None
