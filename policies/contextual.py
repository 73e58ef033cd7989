"""Contextual policies: the arm for this request, chosen from its feature vector x.

One model per arm k, shared by ``lin_ts``, ``lin_ucb`` and ``logistic_ts``: a Gaussian over
the arm's weight vector w_k in R^d with precision P_k = lambda I + A_k and mean
theta_k = P_k^-1 b_k. The state kept per arm is ``ContextualStats``: a count n, the d x d
matrix A and the d vector b, sums over the arm's rewarded decisions, so they change by
increments (one per reward) that a store can add atomically, in any order, like the plain
policies' (n, sum, sum_sq). Priors are the policy's business (lambda), never stored.

Why (A, b) suffice for a linear model: with rewards r = x.w + e, e ~ N(0, s^2), and the
ridge prior w ~ N(0, s^2 / lambda I), the log posterior of an arm is, up to a constant,

    -(1 / 2 s^2) [ w^T (lambda I + sum x x^T) w - 2 w^T sum r x + sum r^2 ]

so the data enter only through A = sum x x^T (the Gram matrix) and b = sum r x: the
posterior N(P^-1 b, s^2 P^-1), and equally the ridge estimate P^-1 b, are functions of
(A, b) alone (sum r^2 is constant in w). ``logistic_ts`` keeps the same shapes for a
different reason: each observation's log-likelihood is replaced by its second-order expansion
at a linearisation point, a quadratic in w that adds h x x^T to A and (h z + r - p) x to b
(see ``policies.logistic_ts``).

Every policy decides from two scalars per arm, never from a d-dimensional draw:
mean_k(x) = x.theta_k and width_k(x) = sqrt(x^T P_k^-1 x). ``lin_ts`` samples
N(mean, v^2 width^2), ``logistic_ts`` N(mean, width^2) (the Laplace posterior of x.w_k),
``lin_ucb`` takes the argmax of mean + alpha width. So a Thompson decision is one normal draw
per arm and its exact propensity is the one-dimensional quadrature plain Thompson sampling
uses (``max_probabilities`` with ``NormalMarginals``).

Both scalars are positively homogeneous in x (c x gives c mean and c width for c > 0), so
scaling x changes no decision and no propensity: every decision first divides x by a
positive scale (its largest magnitude on the vectorised path, its Euclidean norm on the live
path). Nothing can then underflow or overflow, and for x != 0 every width is positive
(x = 0 ties every arm; ties are uniform).

Two paths, one law (tested with chi-square):

* vectorised: ``select``, ``probabilities``, ``update`` over ``ContextualStats`` with any
  batch shape, factorising every arm's precision on each call (simulations, replay);
* live: ``prepare(stats)`` factorises once per state (theta_k and the inverse Cholesky factor
  L_k^-1 of P_k, stacked into one matrix) - the service refreshes it in the background,
  never per request - and ``select_one(model, x, ...)`` costs one small matrix-vector
  product and one normal draw per arm.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from policies.base import (
    REWARD_MAGNITUDE_LIMIT,
    BoolArray,
    FloatArray,
    IntArray,
    ParamSpec,
    Selection,
    checked_params,
    eligible_mask,
    explored_flags,
    positive,
)

#: Largest feature magnitude accepted. A reward adds x_i x_j (times a weight <= 1) to A and
#: r x_i to b; with |x| <= 1e100 and |r| <= 1e100 each increment is at most 1e200, so no
#: sum leaves the doubles before 1e108 rewards, the same margin as the plain statistics.
FEATURE_MAGNITUDE_LIMIT = 1e100

LAMBDA_SPEC = positive(
    1.0, doc="prior precision of each coefficient (ridge): lambda I is added to A"
)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class FeatureError(ValueError):
    """A feature vector no policy can use; ``index`` is the offending column (-1: its shape).

    ``field`` reads ``features[3]`` (or ``features``): the service maps the column back to the
    feature's declared name.
    """

    def __init__(self, index: int, message: str) -> None:
        field = "features" if index < 0 else f"features[{index}]"
        super().__init__(f"{field}: {message}")
        self.field = field
        self.index = index
        self.message = message


def check_features(features: ArrayLike, dim: int) -> FloatArray:
    """``features`` as float64 with ``dim`` values on the last axis, every one finite and of
    magnitude at most FEATURE_MAGNITUDE_LIMIT; FeatureError naming the first bad column."""
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError):
        raise FeatureError(-1, "not an array of numbers") from None
    if x.ndim == 0 or x.shape[-1] != dim:
        raise FeatureError(-1, f"expected {dim} values per row, got shape {x.shape}")
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(x) <= FEATURE_MAGNITUDE_LIMIT)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        value = float(x[where])
        problem = "is not a finite number" if not math.isfinite(value) else "is too large"
        raise FeatureError(
            where[-1], f"{value!r} {problem} (at most {FEATURE_MAGNITUDE_LIMIT:g} in magnitude)"
        )
    return x


def normalised(x: FloatArray) -> FloatArray:
    """x / max |x_i| per row (zero rows stay zero): the same decisions, nothing underflows."""
    top = np.abs(x).max(axis=-1, keepdims=True)
    return np.asarray(x / np.where(top > 0.0, top, 1.0), dtype=np.float64)


@dataclass(frozen=True)
class ContextualStats:
    """Per-arm sufficient statistics of a contextual policy.

    ``n`` has shape ``batch_shape + (n_arms,)``, ``gram`` (A) ``batch_shape + (n_arms, d, d)``
    and ``b`` ``batch_shape + (n_arms, d)``. For the linear policies A = sum x x^T and
    b = sum r x over the arm's rewarded decisions (possibly discounted); ``logistic_ts``
    weights each term (see the module docstring). The prior (lambda I) is not included.
    """

    n: FloatArray
    gram: FloatArray
    b: FloatArray

    @classmethod
    def zeros(cls, n_arms: int, dim: int, batch_shape: tuple[int, ...] = ()) -> ContextualStats:
        return cls(
            np.zeros((*batch_shape, n_arms)),
            np.zeros((*batch_shape, n_arms, dim, dim)),
            np.zeros((*batch_shape, n_arms, dim)),
        )

    @property
    def n_arms(self) -> int:
        return int(self.n.shape[-1])

    @property
    def dim(self) -> int:
        return int(self.b.shape[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.n.shape[:-1])

    def check(self) -> None:
        """Raise ValueError unless the three arrays have consistent shapes."""
        shape = self.n.shape
        d = self.b.shape[-1] if self.b.ndim else -1
        if self.b.shape != (*shape, d) or self.gram.shape != (*shape, d, d) or d < 1:
            raise ValueError(
                f"stats: shapes n {self.n.shape}, gram {self.gram.shape}, b {self.b.shape} "
                "are not batch+(K,), batch+(K, d, d), batch+(K, d)"
            )

    def copy(self) -> ContextualStats:
        return ContextualStats(
            *(np.array(a, dtype=np.float64, order="C") for a in (self.n, self.gram, self.b))
        )

    def plus(self, increment: ArmIncrement, gamma: float = 1.0) -> ContextualStats:
        """One state (batch shape ()) after ``increment``: what a store does per reward.

        With gamma < 1 every arm's statistics first decay by gamma, then the increment is
        added to its arm: the rule ``update`` applies, so a store that does this per reward
        holds the statistics a simulation would.
        """
        if self.batch_shape != ():
            raise ValueError("plus needs a single state, not a batch")
        new = self.copy()
        if gamma != 1.0:
            for array in (new.n, new.gram, new.b):
                array *= gamma
        new.n[increment.arm] += increment.n
        new.gram[increment.arm] += increment.gram
        new.b[increment.arm] += increment.b
        return new


@dataclass(frozen=True)
class ArmIncrement:
    """What one reward adds to its arm's statistics, before any discount."""

    arm: int
    n: float
    gram: FloatArray  # (d, d), symmetric
    b: FloatArray  # (d,)


def outer_increment(weights: FloatArray, x: FloatArray) -> FloatArray:
    """w x x^T per row, in one fixed order of operations, so every path adds the same bits;
    w (x_i x_j) rather than (w x_i) x_j keeps the result exactly symmetric."""
    return np.asarray(weights[..., None, None] * (x[..., :, None] * x[..., None, :]))


def factors(precision: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(theta, L^-1) per arm: theta = P^-1 b and the inverse of P's Cholesky factor L.

    P^-1 = L^-T L^-1, so theta = L^-T (L^-1 b) and x^T P^-1 x = |L^-1 x|^2, a sum of squares
    that cannot come out negative. Raises ``numpy.linalg.LinAlgError`` (a ValueError) if some
    P is not positive definite, which lambda > 0 rules out for real statistics.
    """
    root_inv = np.linalg.inv(np.linalg.cholesky(precision))
    inner = root_inv @ b[..., None]
    theta = (np.swapaxes(root_inv, -1, -2) @ inner)[..., 0]
    return np.asarray(theta, dtype=np.float64), np.asarray(root_inv, dtype=np.float64)


def scores_from_factors(
    theta: FloatArray, root_inv: FloatArray, x: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """(x.theta_k, sqrt(x^T P_k^-1 x)) per arm; x of shape batch+(d,) broadcasts."""
    means = (theta * x[..., None, :]).sum(axis=-1)
    u = (root_inv @ x[..., None, :, None])[..., 0]
    widths = np.sqrt((u * u).sum(axis=-1))
    return np.asarray(means, dtype=np.float64), np.asarray(widths, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class PreparedModel:
    """One state factorised for the live path; build it with ``ContextualPolicy.prepare``.

    ``theta`` (K, d) holds each arm's posterior mean; ``stacked`` is theta above the K
    inverse Cholesky factors, shape (K + K d, d), so that one matrix-vector product gives
    every mean and every L_k^-1 x; ``blocks`` (K d, K) sums each arm's d squares of L_k^-1 x
    in one more product. Immutable: a refresh builds a new one.
    """

    theta: FloatArray
    stacked: FloatArray
    n_arms: int
    dim: int
    blocks: FloatArray

    @classmethod
    def from_factors(cls, theta: FloatArray, root_inv: FloatArray) -> PreparedModel:
        n_arms, dim = theta.shape
        stacked = np.ascontiguousarray(
            np.concatenate([theta, root_inv.reshape(n_arms * dim, dim)], axis=0)
        )
        stacked.flags.writeable = False
        theta = stacked[:n_arms]
        blocks = np.repeat(np.eye(n_arms), dim, axis=0)
        blocks.flags.writeable = False
        return cls(theta, stacked, n_arms, dim, blocks)

    def scores(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(means, widths), shape (K,) each, for one (already checked) feature vector."""
        k = self.n_arms
        y = self.stacked @ x
        u = y[k:].reshape(k, self.dim)
        return y[:k], np.sqrt((u * u).sum(axis=1))

    def scores_one(self, x: FloatArray) -> tuple[list[float], list[float]]:
        """``scores`` as lists of floats, what the live path works on, in four numpy calls
        (about 3 µs at d = 16, 5 arms, where the arrays and their conversion take 4.5):
        width_k^2 = |L_k^-1 x|^2, a sum of squares, as a product with ``blocks``."""
        k = self.n_arms
        y = self.stacked @ x
        u = y[k:]
        squares = (u * u) @ self.blocks
        return y[:k].tolist(), [math.sqrt(w) for w in squares.tolist()]


class NormalMarginals:
    """N(loc, scale^2) per arm, in the form ``max_probabilities`` integrates.

    Light tails: 8 Gauss-Legendre nodes per panel (the default) suffice without a warp.
    """

    def __init__(self, loc: FloatArray, scale: FloatArray) -> None:
        self.loc, self.scale = loc, scale

    def ppf(self, levels: FloatArray) -> FloatArray:
        return np.asarray(self.loc[..., None] + self.scale[..., None] * special.ndtri(levels))

    def logpdf(self, x: FloatArray) -> FloatArray:
        loc, scale = self.loc[..., None], self.scale[..., None]
        z = (x - loc) / scale
        return np.asarray(-0.5 * z * z - np.log(scale) - _HALF_LOG_2PI)

    def logcdf(self, x: FloatArray) -> FloatArray:
        """log Phi(z) as the log of ``ndtr``, at half the cost of ``log_ndtr``: Phi is
        accurate to a relative 1e-16 until it underflows (z < -38), where log 0 = -inf
        stands for a factor below 1e-300, which contributes nothing."""
        loc, scale = self.loc[..., None, :, None], self.scale[..., None, :, None]
        with np.errstate(divide="ignore"):
            return np.asarray(np.log(special.ndtr((x - loc) / scale)))


def pick_from_law(law: Sequence[float], eligible: Sequence[int], u: float) -> int:
    """The eligible arm at ``u`` in [0, 1) of ``law``'s cumulative distribution: a live
    decision drawn from the law it logs (``ContextualPolicy.law_one``)."""
    threshold = u * sum(law[i] for i in eligible)  # the sum may be 1 - a few ulp
    total = 0.0
    for i in eligible:
        total += law[i]
        if threshold < total:
            return i
    return next(i for i in reversed(eligible) if law[i] > 0.0)  # u * sum rounded up to it


class ContextualPolicy(ABC):
    """A bandit policy over per-arm (n, A, b) that decides from a feature vector per row.

    A sibling of ``policies.base.Policy``, not a subclass: its ``select`` needs features,
    so it could not stand wherever a ``Policy`` is expected. The names and conventions are
    the same (``select``/``probabilities``/``update``/``update_inplace``, ``select_one`` and
    ``probabilities_one`` for the live path, ``param_specs`` checked at construction, every
    policy taking ``gamma``); ``policies.registry.is_contextual`` tells callers which kind a
    name is. Subclasses say how scores become a choice (``_choose``, ``_choose_one``) and its
    law (``_law``); a model whose observations are not linear overrides ``_working``.
    """

    name: ClassVar[str]
    param_specs: ClassVar[Mapping[str, ParamSpec]]
    reward_bounds: ClassVar[tuple[float, float]] = (
        -REWARD_MAGNITUDE_LIMIT,
        REWARD_MAGNITUDE_LIMIT,
    )
    #: True when an observation's increment depends on the current model (logistic_ts).
    linearised: ClassVar[bool] = False

    def __init__(self, **params: float) -> None:
        self.params: dict[str, float] = checked_params(self.name, self.param_specs, params)
        self.gamma = self.params["gamma"]
        self.lam = self.params["lambda"]

    def describe(self) -> dict[str, float]:
        """Parameters with defaults filled in, as the service reports them."""
        return dict(self.params)

    # -- the model -------------------------------------------------------------------------

    def precision(self, stats: ContextualStats) -> FloatArray:
        """P = lambda I + A per arm."""
        return np.asarray(stats.gram + self.lam * np.eye(stats.dim), dtype=np.float64)

    def factors(self, stats: ContextualStats) -> tuple[FloatArray, FloatArray]:
        """(theta, L^-1) of every arm: see ``policies.contextual.factors``."""
        stats.check()
        return factors(self.precision(stats), stats.b)

    def scores(self, stats: ContextualStats, features: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(mean, width) of every arm for the features scaled to max |x_i| = 1, which is what
        decisions use; shapes broadcast(batch of stats, batch of features) + (K,).

        One feature vector per state (a simulation step): one LU solve of P against (b, x)
        per arm, mean = x.P^-1 b and width^2 = x.P^-1 x, half the cost of factorising. More
        feature vectors than states (one state, many requests: a law test, a replay): the
        factors of each state once, then a product per feature vector.
        """
        stats.check()
        x = normalised(check_features(features, stats.dim))
        if np.broadcast_shapes(stats.batch_shape, x.shape[:-1]) != stats.batch_shape:
            theta, root_inv = self.factors(stats)
            return scores_from_factors(theta, root_inv, x)
        rows = np.broadcast_to(x[..., None, :], stats.b.shape)
        solved = np.linalg.solve(self.precision(stats), np.stack([stats.b, rows], axis=-1))
        means = (rows * solved[..., 0]).sum(axis=-1)
        squares = (rows * solved[..., 1]).sum(axis=-1)  # x^T P^-1 x >= 0 up to rounding
        return np.asarray(means, dtype=np.float64), np.sqrt(np.maximum(squares, 0.0))

    def greedy_values(self, stats: ContextualStats, features: ArrayLike) -> FloatArray:
        """x.theta_k for the features as given: the predicted reward (log-odds for
        ``logistic_ts``). The greedy arm maximises it; ``explored`` compares with it."""
        theta, _ = self.factors(stats)
        x = check_features(features, stats.dim)
        return np.asarray((theta * x[..., None, :]).sum(axis=-1), dtype=np.float64)

    def prepare(self, stats: ContextualStats) -> PreparedModel:
        """Factorise one state (batch shape ()) for ``select_one`` and ``probabilities_one``.

        O(K d^3): done when the statistics change (in the background), never per request.
        """
        if stats.batch_shape != ():
            raise ValueError("prepare needs a single state, not a batch")
        return PreparedModel.from_factors(*self.factors(stats))

    # -- what each policy defines ----------------------------------------------------------

    @abstractmethod
    def _choose(
        self, means: FloatArray, widths: FloatArray, mask: BoolArray, rng: np.random.Generator
    ) -> IntArray:
        """One eligible arm per row, from normalised scores (shape batch+(K,))."""

    @abstractmethod
    def _law(self, means: FloatArray, widths: FloatArray, mask: BoolArray) -> FloatArray:
        """The law of ``_choose``: sums to 1 over eligible arms, 0 elsewhere."""

    @abstractmethod
    def _choose_one(
        self,
        means: Sequence[float],
        widths: Sequence[float],
        eligible: Sequence[int],
        rng: random.Random,
    ) -> int:
        """Scalar twin of ``_choose`` over the listed eligible arms, same law."""

    def _law_one(
        self, means: list[float], widths: list[float], eligible: Sequence[int]
    ) -> list[float]:
        """``_law`` of one row, from lists, over the listed (distinct) eligible arms: the live
        path's. This one goes through ``_law``; the Thompson policies take a scalar route."""
        mask = np.zeros(len(means), dtype=bool)
        mask[list(eligible)] = True
        law = self._law(np.array(means), np.array(widths), mask)
        return [float(p) for p in law]

    def _working(
        self, rewards: FloatArray, x: FloatArray, theta: FloatArray | None
    ) -> tuple[FloatArray, FloatArray]:
        """(weight, target) per observation: it adds weight x x^T to A and target x to b.

        Linear models: (1, r). ``theta`` is the chosen arm's current mean (rows of x), given
        only when ``linearised``.
        """
        return np.ones_like(rewards), rewards

    # -- vectorised path -------------------------------------------------------------------

    def select(
        self,
        stats: ContextualStats,
        features: ArrayLike,
        rng: np.random.Generator,
        eligible: BoolArray | None = None,
    ) -> Selection:
        """One arm per row; ``features`` (batch+(d,)) broadcasts against the stats' batch, so
        one state can serve many feature vectors. ``explored``: the arm's x.theta is below
        the best eligible one."""
        means, widths = self.scores(stats, features)
        mask = eligible_mask(stats.n_arms, eligible, means.shape[:-1])
        arms = self._choose(means, widths, mask, rng)
        return Selection(arms, explored_flags(means, mask, arms))

    def probabilities(
        self, stats: ContextualStats, features: ArrayLike, eligible: BoolArray | None = None
    ) -> FloatArray:
        """P(``select`` chooses arm | features), per row; 0 on ineligible arms."""
        means, widths = self.scores(stats, features)
        mask = eligible_mask(stats.n_arms, eligible, means.shape[:-1])
        return self._law(means, widths, mask)

    def update(
        self,
        stats: ContextualStats,
        arms: ArrayLike,
        features: ArrayLike,
        rewards: ArrayLike,
        observed: BoolArray | None = None,
    ) -> ContextualStats:
        """Statistics after one reward per row (where ``observed``), with the features the
        decision used; ``stats`` is left untouched (see ``update_inplace``)."""
        new = stats.copy()
        self.update_inplace(new, arms, features, rewards, observed)
        return new

    def update_inplace(
        self,
        stats: ContextualStats,
        arms: ArrayLike,
        features: ArrayLike,
        rewards: ArrayLike,
        observed: BoolArray | None = None,
    ) -> None:
        """``update`` written into ``stats``'s own writable C-contiguous float64 arrays.

        Per observing row: a linearised model first computes its (weight, target) at the
        chosen arm's current mean; then with gamma < 1 every arm of the row decays by gamma
        (as ``Policy.update`` does); then the chosen arm gets n += 1, A += w x x^T and
        b += t x, the increments ``increments`` returns for the live path.
        """
        stats.check()
        for array in (stats.n, stats.gram, stats.b):
            if (
                array.dtype != np.float64
                or not array.flags.c_contiguous
                or not array.flags.writeable
            ):
                raise ValueError("update_inplace needs writable C-contiguous float64 arrays")
        n_arms, dim, batch = stats.n_arms, stats.dim, stats.batch_shape
        x = np.broadcast_to(check_features(features, dim), (*batch, dim)).reshape(-1, dim)
        chosen = np.broadcast_to(np.asarray(arms, dtype=np.int64), batch).reshape(-1)
        if chosen.size and (int(chosen.min()) < 0 or int(chosen.max()) >= n_arms):
            raise IndexError(f"arms: index out of range for {n_arms} arms")
        reward = np.broadcast_to(np.asarray(rewards, dtype=np.float64), batch).reshape(-1)
        rows = np.arange(chosen.size)
        if observed is not None:
            seen = np.broadcast_to(np.asarray(observed, dtype=bool), batch).reshape(-1)
            rows = np.flatnonzero(seen)
            x, chosen, reward = x[rows], chosen[rows], reward[rows]
        flat = rows * n_arms + chosen
        n = stats.n.reshape(-1)
        gram = stats.gram.reshape(-1, dim, dim)
        b = stats.b.reshape(-1, dim)
        theta = None
        if self.linearised:  # the chosen arm's current mean, by one solve per row
            precision = gram[flat] + self.lam * np.eye(dim)
            theta = np.linalg.solve(precision, b[flat][..., None])[..., 0]
        weights, targets = self._working(reward, x, theta)
        if self.gamma != 1.0:
            states = math.prod(batch)
            for array in (stats.n, stats.gram, stats.b):
                array.reshape(states, -1)[rows] *= self.gamma
        n[flat] += 1.0
        gram[flat] += outer_increment(weights, x)
        b[flat] += targets[:, None] * x

    # -- live path -------------------------------------------------------------------------

    def _live_features(self, model: PreparedModel, features: ArrayLike) -> FloatArray:
        """Checked and scaled to unit Euclidean norm (``math.hypot`` is exact and scale-safe,
        and cheaper than numpy's reductions on 16 values)."""
        try:
            x = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError):
            raise FeatureError(-1, "not an array of numbers") from None
        if x.shape != (model.dim,):
            check_features(x, model.dim)  # raises on the shape
        norm = math.hypot(*x.tolist())  # exact scaling inside: no overflow, no underflow
        if not norm <= FEATURE_MAGNITUDE_LIMIT:  # NaN, inf, or some value may be too large
            check_features(x, model.dim)  # raises naming the column, unless all are fine
        return x / norm if norm > 0.0 else x

    def select_one(
        self,
        model: PreparedModel,
        features: ArrayLike,
        rng: random.Random,
        eligible: Sequence[int],
    ) -> tuple[int, bool]:
        """One live decision: (arm index, explored). Same law as ``select`` on the state
        ``model`` was prepared from. ``eligible`` lists the eligible arms (non-empty)."""
        mean_list, widths = model.scores_one(self._live_features(model, features))
        arm = self._choose_one(mean_list, widths, eligible, rng)
        chosen = mean_list[arm]
        return arm, any(mean_list[i] > chosen for i in eligible)

    def probabilities_one(
        self, model: PreparedModel, features: ArrayLike, eligible: Sequence[int]
    ) -> tuple[float, ...]:
        """Propensities of the live decision for these features; ineligible arms get 0."""
        return self.law_one(model, features, eligible)[0]

    def law_one(
        self, model: PreparedModel, features: ArrayLike, eligible: Sequence[int]
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(law, means) of the live decision for these features, each arm's: all a Route
        needs to decide (it draws the arm from the law itself, so the propensities it logs
        are the law it sampled) and to say whether it explored (some eligible arm's mean is
        larger than the chosen one's), with the features checked and scored once."""
        arms = sorted(set(eligible))  # the law's arms: distinct, in order
        if not arms:
            raise ValueError("eligible: at least one arm must be eligible")
        if arms[0] < 0 or arms[-1] >= model.n_arms:
            raise IndexError(f"eligible: index out of range for {model.n_arms} arms")
        means, widths = model.scores_one(self._live_features(model, features))
        return tuple(self._law_one(means, widths, arms)), tuple(means)

    def increments(
        self, model: PreparedModel, arm: int, features: ArrayLike, reward: float
    ) -> ArmIncrement:
        """What one reward adds to arm ``arm`` (before any discount), from the features the
        decision used. Linear policies ignore ``model``; ``logistic_ts`` linearises at
        ``model``'s mean of the arm, so the replica that folds the reward in needs only its
        current prepared model, never the store's latest state."""
        x = check_features(features, model.dim)
        if x.ndim != 1:
            raise FeatureError(-1, f"expected one vector of {model.dim} values")
        if not 0 <= arm < model.n_arms:
            raise IndexError(f"arm: index {arm} out of range for {model.n_arms} arms")
        low, high = self.reward_bounds
        if not low <= reward <= high:
            raise ValueError(f"reward: {reward!r} is outside [{low:g}, {high:g}]")
        r = np.array([float(reward)])
        theta = model.theta[arm][None, :] if self.linearised else None
        weights, targets = self._working(r, x[None, :], theta)
        return ArmIncrement(arm, 1.0, outer_increment(weights, x[None, :])[0], targets[0] * x)
