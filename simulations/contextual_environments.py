"""Contextual environments and their runner: each request brings a feature vector, and the
best arm depends on it.

Four kinds, all vectorised over runs like the plain environments:

* ``linear``: x uniform on the unit sphere of R^d, arm k pays x.theta_k plus Gaussian noise,
  each theta_k drawn once (from ``coefficient_seed``) uniform on the unit sphere, so every
  mean lies in [-1, 1] (the setting of the linear bandit regret bounds: |x| <= 1, |theta| <= 1);
* ``logistic``: x = [1, z] with z uniform on the unit sphere of R^(d-1), arm k pays
  Bernoulli(sigmoid(scale x.theta_k));
* ``segments``: each request belongs to one segment (drawn by weight), x is the intercept
  and the segment's one-hot column, arm k pays Bernoulli(means[segment][k]);
* ``model_routing``: prompt types instead of segments, each model (arm) with a quality per
  prompt type and a cost; the reward is success ~ Bernoulli(quality) minus
  ``cost_weight * cost``, the usual "quality minus priced cost" reward of a model router.

The vector of the last two is laid out as the service builds it for one categorical feature
(``bandit_router.route.features``): [1 (intercept), one column per declared value, "other"];
the simulated traffic never produces "other", so that column stays 0, as in production.

``simulations.runner.simulate_contextual`` runs them. Regret is pseudo-regret against the
oracle that knows every arm's mean for this x and plays the best: the sum over steps of
max_k mu_k(x) - mu_chosen(x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from simulations.environments import FloatArray, IntArray

CONTEXTUAL_KINDS = ("linear", "logistic", "segments", "model_routing")

#: Contexts drawn (fixed seed) to estimate the oracle's and the best fixed arm's mean reward
#: for the linear and logistic kinds: means lie in [-1, 1] (sd <= 1), so the standard error
#: of each estimate is at most 1 / sqrt(2e5) = 0.0022 per decision.
REFERENCE_DRAWS = 200_000


@dataclass(frozen=True)
class ContextualEnvironment:
    """Traffic whose arm means depend on each request's feature vector.

    ``link`` is ``linear`` (mean x.theta_k), ``logistic`` (sigmoid(scale x.theta_k)) or
    ``table`` (one row of ``table`` per segment, chosen by ``segment_weights``, with the
    segment's vector from ``segment_vectors``). ``success`` rewards are Bernoulli of that
    probability; otherwise Gaussian with noise ``sigma``. ``penalty`` (per arm) is subtracted
    from every reward and mean (model routing's priced cost).
    """

    kind: str
    arm_names: tuple[str, ...]
    columns: tuple[str, ...]
    link: str
    bernoulli: bool
    sigma: float = 0.0
    coefficients: FloatArray | None = None  # (K, d) for linear and logistic
    scale: float = 1.0
    segment_weights: FloatArray | None = None  # (S,)
    segment_vectors: FloatArray | None = None  # (S, d)
    table: FloatArray | None = None  # (S, K)
    penalty: FloatArray | None = None  # (K,)
    cost: FloatArray | None = None
    latency: FloatArray | None = None

    @property
    def n_arms(self) -> int:
        return len(self.arm_names)

    @property
    def dim(self) -> int:
        return len(self.columns)

    @property
    def reward_bounds(self) -> tuple[float, float]:
        """Every reward the store may see."""
        penalty = self.penalty if self.penalty is not None else np.zeros(self.n_arms)
        if not self.bernoulli:
            return -math.inf, math.inf
        return float(-penalty.max()), float(1.0 - penalty.min())

    def draw(self, runs: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        """(x, p): one feature vector per run (runs, d) and every arm's success probability
        (Bernoulli) or mean (Gaussian) before the penalty, (runs, K)."""
        if self.link == "table":
            assert self.segment_weights is not None and self.segment_vectors is not None
            assert self.table is not None
            segments = rng.choice(self.segment_weights.size, size=runs, p=self.segment_weights)
            return self.segment_vectors[segments], self.table[segments]
        assert self.coefficients is not None
        if self.link == "linear":
            z = rng.standard_normal((runs, self.dim))
            x = z / np.linalg.norm(z, axis=1, keepdims=True)
            return x, x @ self.coefficients.T
        z = rng.standard_normal((runs, self.dim - 1))
        x = np.concatenate([np.ones((runs, 1)), z / np.linalg.norm(z, axis=1, keepdims=True)], 1)
        return x, special.expit(self.scale * (x @ self.coefficients.T))

    def means(self, p: FloatArray) -> FloatArray:
        """Expected reward of every arm from ``draw``'s p."""
        return p if self.penalty is None else p - self.penalty

    def rewards(self, p: FloatArray, arms: IntArray, rng: np.random.Generator) -> FloatArray:
        """One reward per run for the chosen arms; the random numbers do not depend on the
        arms (common random numbers across policies)."""
        rows = np.arange(arms.size)
        chosen = p[rows, arms]
        if self.bernoulli:
            reward = (rng.random(arms.size) < chosen).astype(np.float64)
        else:
            reward = chosen + self.sigma * rng.standard_normal(arms.size)
        if self.penalty is not None:
            reward = reward - self.penalty[arms]
        return np.asarray(reward, dtype=np.float64)

    def reference_rates(self) -> tuple[float, float]:
        """(E[max_k mu_k(x)], max_k E[mu_k(x)]): the oracle's mean reward per decision and
        the best fixed arm's. Their difference is the regret per step of the best any
        context-free policy can do. Exact for tables, Monte Carlo (fixed seed) otherwise."""
        if self.link == "table":
            assert self.table is not None and self.segment_weights is not None
            means = self.means(self.table)
            weights = self.segment_weights
            return float(weights @ means.max(axis=1)), float((weights @ means).max())
        _, p = self.draw(REFERENCE_DRAWS, np.random.default_rng(0))
        means = self.means(p)
        return float(means.max(axis=1).mean()), float(means.mean(axis=0).max())


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> FloatArray:
    """Rows uniform on the unit sphere of R^dim."""
    z = rng.standard_normal((rows, dim))
    return np.asarray(z / np.linalg.norm(z, axis=1, keepdims=True), dtype=np.float64)


def one_hot_vectors(segments: int) -> FloatArray:
    """[1, e_s, 0 ("other")] per segment: the service's layout of one categorical feature."""
    vectors = np.zeros((segments, segments + 2))
    vectors[:, 0] = 1.0
    vectors[np.arange(segments), 1 + np.arange(segments)] = 1.0
    return vectors
