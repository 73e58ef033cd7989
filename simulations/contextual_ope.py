"""Off-policy evaluation of contextual targets: feature vectors, fixed statistics, and the
cross-fitted ridge reward model of the doubly robust estimator.

**Feature vectors.** A contextual target declares its own ``context_features`` and may use
other features than the logger. Its vector for each logged decision is rebuilt from what the
log keeps of the request - ``context`` (numbers) and ``attributes`` (strings), declared or
not, since the service logs every key - with the service's layout
(``bandit_router.route.features.FeatureSpace``; ``tests/test_ope_contextual.py`` checks they
agree): ``[1, columns of each feature in declaration order]``, a numeric feature
``context[name] / scale``, a categorical one one-hot over its ``values`` plus "other". A
feature the decision's request did not carry gets exactly what the service would give it: 0
(numeric) or the "other" column (categorical). A ``required`` feature the request lacked
would have made the target's service refuse that Route: such decisions cannot be scored and
are left out, with a warning that counts them. A feature that no logged decision carries is
warned about too: the target is then evaluated as if it had that feature constant.

**Fixed statistics.** A learning target (``lin_ts``, ``lin_ucb``, ``logistic_ts``) is
evaluated as the law it serves at one fixed state of its statistics, for each logged
decision's vector. ``fitted_target`` takes that state from the log itself: the per-arm
(n, A, b) of the decisions in the log's first ``share`` (default half), computed with the
target's own features and update rule, and the target is then scored on the remaining
decisions only, so no reward both trains the target and scores it. ``promote`` instead uses
the service's current statistics (``bandit_router.analysis.promotion``). Either way this
prices the next decisions at that state, not the policy's future learning.

**Reward model.** DR needs a per-arm reward model m(x, a). Here it is a ridge regression of
the reward on the target's feature vector for each arm, cross-fitted over ``FOLDS`` folds
(decision i is in fold i mod K; fold k's predictions come from the model fitted on the other
folds), so no decision's own reward enters its prediction and the DR terms stay unbiased
and independent enough for the central limit interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.base import PolicyConfigError
from policies.contextual import ContextualPolicy, ContextualStats
from policies.registry import create_policy, is_contextual
from simulations.environments import FloatArray, IntArray

#: Folds of the cross-fitted reward model.
FOLDS = 5
#: Ridge penalty of the reward model (per coefficient, on the unscaled features).
RIDGE_LAMBDA = 1.0
#: Default share of the log that fits a learning target's statistics in ``replay``.
FIT_SHARE = 0.5
#: Feature vectors whose law is computed per vectorised policy call.
CHUNK = 4096


@dataclass(frozen=True)
class FeatureSpec:
    """One declared feature, as in an experiments file's ``context_features``."""

    name: str
    scale: float = 1.0
    values: tuple[str, ...] = ()
    required: bool = False

    @property
    def width(self) -> int:
        return len(self.values) + 1 if self.values else 1

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> FeatureSpec:
        """From YAML/JSON: ``{name, scale?, values?, required?}``; ValueError naming ``where``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise ValueError(f"{where}: expected a mapping with a name, got {data!r}")
        unknown = set(data) - {"name", "scale", "values", "required"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        values = data.get("values", ()) or ()
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{where}.values: expected a list of strings, got {values!r}")
        scale = data.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
            raise ValueError(f"{where}.scale: expected a positive number, got {scale!r}")
        return cls(data["name"], float(scale), tuple(values), bool(data.get("required", False)))


def dimension(features: Sequence[FeatureSpec]) -> int:
    """Columns of the vector: the intercept and every feature's columns."""
    return 1 + sum(f.width for f in features)


@dataclass(frozen=True)
class FeatureMatrix:
    """The vectors of a log's decisions, and what the log lacked.

    ``usable`` is False where a required feature was missing; ``never_seen`` names features
    no decision carried.
    """

    x: FloatArray
    usable: np.ndarray[Any, np.dtype[np.bool_]]
    missing_required: tuple[tuple[str, int], ...]
    never_seen: tuple[str, ...]


def feature_matrix(
    features: Sequence[FeatureSpec],
    contexts: Sequence[Mapping[str, float]],
    attributes: Sequence[Mapping[str, str]],
) -> FeatureMatrix:
    """Each decision's vector under ``features`` (module docstring)."""
    n = len(contexts)
    x = np.zeros((n, dimension(features)))
    x[:, 0] = 1.0
    usable = np.ones(n, dtype=bool)
    missing: list[tuple[str, int]] = []
    never: list[str] = []
    column = 1
    for feature in features:
        if feature.values:
            offsets = {value: column + i for i, value in enumerate(feature.values)}
            other = column + len(feature.values)
            present = np.zeros(n, dtype=bool)
            for row, attrs in enumerate(attributes):
                label = attrs.get(feature.name)
                present[row] = label is not None
                x[row, offsets.get(label, other) if label is not None else other] = 1.0
        else:
            values = [c.get(feature.name) for c in contexts]
            present = np.asarray([v is not None for v in values], dtype=bool)
            x[:, column] = [0.0 if v is None else v / feature.scale for v in values]
        column += feature.width
        if n and not present.any():
            never.append(feature.name)
        if feature.required and not present.all():
            missing.append((feature.name, int((~present).sum())))
            usable &= present
    return FeatureMatrix(x, usable, tuple(missing), tuple(never))


def policy_from_spec(data: Mapping[str, Any], where: str) -> tuple[ContextualPolicy, str]:
    """A contextual policy from ``{name, params}``, and its label; ValueError naming ``where``."""
    name = data.get("name")
    if not isinstance(name, str) or not is_contextual(name):
        raise ValueError(f"{where}.name: {name!r} is not a contextual policy")
    params = data.get("params", {}) or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}.params: expected a mapping, got {params!r}")
    try:
        policy = create_policy(name, dict(params), contextual=True)
    except PolicyConfigError as error:
        raise ValueError(f"{where}: {error}") from None
    shown = ",".join(f"{k}={v:g}" for k, v in sorted(params.items()))
    return policy, f"{name}:{shown}" if shown else name


def fit_statistics(
    policy: ContextualPolicy, x: FloatArray, arms: IntArray, rewards: FloatArray, n_arms: int
) -> ContextualStats:
    """The statistics ``policy`` holds after folding in these decisions' rewards, in order.

    Linear, undiscounted policies: A_k = sum x x^T and b_k = sum r x over arm k's decisions
    in one product each. Otherwise (discounting, or ``logistic_ts``'s linearised update
    that depends on the model so far) the policy's own update, one decision at a time.
    """
    dim = x.shape[1]
    stats = ContextualStats.zeros(n_arms, dim)
    if not policy.linearised and policy.gamma == 1.0:
        for k in range(n_arms):
            rows = arms == k
            xk = x[rows]
            stats.n[k] = float(rows.sum())
            stats.gram[k] = xk.T @ xk
            stats.b[k] = xk.T @ rewards[rows]
        return stats
    for i in range(arms.shape[0]):
        policy.update_inplace(stats, arms[i], x[i], rewards[i])
    return stats


def contextual_law(policy: ContextualPolicy, stats: ContextualStats, x: FloatArray) -> FloatArray:
    """P(arm | x) at fixed statistics for every row of x, shape (n, arms)."""
    out = np.empty((x.shape[0], stats.n_arms))
    for start in range(0, x.shape[0], CHUNK):
        chunk = slice(start, start + CHUNK)
        out[chunk] = policy.probabilities(stats, x[chunk])
    return out


def cross_fitted_ridge(
    x: FloatArray,
    arms: IntArray,
    rewards: FloatArray,
    n_arms: int,
    *,
    folds: int = FOLDS,
    lam: float = RIDGE_LAMBDA,
) -> FloatArray:
    """Predicted reward of every arm at every decision, shape (n, arms) (module docstring).

    With fewer decisions than folds, every fold is one decision (leave-one-out). An arm with
    no decision outside a fold predicts 0 there (the ridge prior's mean).
    """
    n, dim = x.shape
    k_folds = max(1, min(folds, n))
    fold = np.arange(n) % k_folds
    predictions = np.zeros((n, n_arms))
    penalty = lam * np.eye(dim)
    for f in range(k_folds):
        inside = fold == f
        for k in range(n_arms):
            train = (~inside) & (arms == k)
            xk = x[train]
            theta = np.linalg.solve(penalty + xk.T @ xk, xk.T @ rewards[train])
            predictions[inside, k] = x[inside] @ theta
    return predictions


def split_point(size: int, share: float) -> int:
    """Decisions that fit the statistics: the first ``share`` of ``size``, leaving at least
    one to score (0: the target keeps empty statistics, its prior)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"fit share {share!r} is outside [0, 1)")
    return min(max(0, math.floor(size * share)), max(size - 1, 0))
