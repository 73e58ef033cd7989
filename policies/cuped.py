"""CUPED: a difference in means with less variance, from a covariate measured before exposure.

Deng, Xu, Kohavi and Walker, "Improving the sensitivity of online controlled experiments by
utilizing pre-experiment data" (WSDM 2013). Each decision's reward Y is replaced by
Y - theta (X - mean(X)), where X is a pre-period metric of the unit (e.g. its spend last
month, sent as a context key). X is fixed before the decision, so under randomisation it is
independent of the arm and the adjusted difference in means estimates the same effect; with
theta = Cov(X, Y) / Var(X) its variance is the unadjusted one times 1 - rho^2, rho the
correlation of X and Y.

Here theta is the pooled within-arm least-squares slope (an arm's effect on Y does not leak
into it), and the variance of each arm's adjusted mean is its own sample variance of
Y - theta X over n, so arms with different variances are handled (Welch). The interval is the
normal one at ``level``; theta is estimated, which costs O(1/n) in the variance (negligible at
the sample sizes this is used for).

The reduction reported is the one achieved on this data: 1 - (adjusted variance of the
difference) / (unadjusted variance of the difference); overall, 1 - pooled adjusted variance
/ pooled variance of Y, which equals the squared pooled within-arm correlation r^2.

Validity needs the arm not to depend on Y's past: a fixed-share split or holdout, or an
adaptive policy read as a description of the data (adaptive allocation biases plain
differences in means, adjusted or not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from policies.base import FloatArray


@dataclass
class CupedMoments:
    """Per-arm sums of (x, y) pairs: n, sum x, sum y, sum x^2, sum y^2, sum xy."""

    n_arms: int
    sums: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.sums = np.zeros((6, self.n_arms))

    def add(self, arm: int, x: float, y: float) -> None:
        self.sums[:, arm] += (1.0, x, y, x * x, y * y, x * y)

    def add_arrays(self, arms: np.ndarray, x: FloatArray, y: FloatArray) -> None:
        """Many pairs at once (``arms`` an integer array of arm indices)."""
        for row, values in enumerate((np.ones_like(x), x, y, x * x, y * y, x * y)):
            self.sums[row] += np.bincount(arms, weights=values, minlength=self.n_arms)


@dataclass(frozen=True)
class CupedComparison:
    arm: str
    control: str
    n: int
    control_n: int
    difference: float
    ci_low: float
    ci_high: float
    adjusted_difference: float
    adjusted_ci_low: float
    adjusted_ci_high: float
    variance_reduction: float


@dataclass(frozen=True)
class CupedResult:
    theta: float
    #: 1 - pooled adjusted variance / pooled variance of Y (= r^2 within arms).
    variance_reduction: float
    comparisons: tuple[CupedComparison, ...]


#: Pairs an arm needs before it is compared (a variance from fewer is noise).
MIN_PAIRS = 2


def cuped_compare(
    moments: CupedMoments, arm_names: tuple[str, ...], control: int, level: float = 0.95
) -> CupedResult:
    """Every arm with at least MIN_PAIRS pairs against arm ``control`` (see the module doc)."""
    n, sx, sy, sxx, syy, sxy = moments.sums
    ok = n >= MIN_PAIRS
    safe_n = np.where(ok, n, 1.0)
    mx, my = sx / safe_n, sy / safe_n
    # Within-arm centred sums of squares and products.
    cxx = np.where(ok, sxx - n * mx * mx, 0.0)
    cyy = np.where(ok, syy - n * my * my, 0.0)
    cxy = np.where(ok, sxy - n * mx * my, 0.0)
    pooled_xx, pooled_yy, pooled_xy = cxx.sum(), cyy.sum(), cxy.sum()
    theta = pooled_xy / pooled_xx if pooled_xx > 0 else 0.0
    reduction = (
        pooled_xy * pooled_xy / (pooled_xx * pooled_yy) if pooled_xx > 0 and pooled_yy > 0 else 0.0
    )
    dof = np.maximum(n - 1.0, 1.0)
    var_y = np.maximum(cyy, 0.0) / dof
    var_adj = np.maximum(cyy - 2.0 * theta * cxy + theta * theta * cxx, 0.0) / dof
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    comparisons = []
    if ok[control]:
        for arm in np.flatnonzero(ok):
            if arm == control:
                continue
            diff = float(my[arm] - my[control])
            adjusted = diff - theta * float(mx[arm] - mx[control])
            v = float(var_y[arm] / n[arm] + var_y[control] / n[control])
            v_adj = float(var_adj[arm] / n[arm] + var_adj[control] / n[control])
            comparisons.append(
                CupedComparison(
                    arm=arm_names[arm],
                    control=arm_names[control],
                    n=int(n[arm]),
                    control_n=int(n[control]),
                    difference=diff,
                    ci_low=diff - z * math.sqrt(v),
                    ci_high=diff + z * math.sqrt(v),
                    adjusted_difference=adjusted,
                    adjusted_ci_low=adjusted - z * math.sqrt(v_adj),
                    adjusted_ci_high=adjusted + z * math.sqrt(v_adj),
                    variance_reduction=1.0 - v_adj / v if v > 0 else 0.0,
                )
            )
    return CupedResult(float(theta), float(reduction), tuple(comparisons))
