"""Top-two Thompson sampling (Russo 2016): spend a fixed share of plays on the runner-up.

Plain Thompson sampling nearly stops playing the second-best arm once the best is likely,
which is what minimises regret but slows down *identifying* the best arm. Top-two plays the
TS leader with probability ``leader_probability`` and otherwise a challenger: a fresh TS draw
conditioned to differ from the leader. Conditioning by resampling means the challenger is j
with probability P_j / (1 - P_i) given leader i, so propensities follow in closed form from
the Thompson probabilities P: p_i = b P_i + (1 - b) sum_{j != i} P_j P_i / (1 - P_j).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from policies.base import (
    BoolArray,
    FloatArray,
    IntArray,
    ParamSpec,
    ScalarStats,
    Selection,
    Stats,
    eligible_mask,
    explored_flags,
)
from policies.thompson import ThompsonSampling

#: Resampling rounds before drawing the challenger from its exact conditional law instead.
#: After k failed rounds the challenger's law is still P_j / (1 - P_i), so the fallback does
#: not change the distribution; it only bounds the work when the leader is nearly certain.
MAX_RESAMPLES = 32
#: States whose fallback propensities ``select_one`` remembers (cleared when full).
FALLBACK_CACHE_SIZE = 256


def challenger_weights(probs: FloatArray, mask: BoolArray) -> FloatArray:
    """W[..., j, i] = P(challenger i | leader j) = P_i / sum_{k != j} P_k over eligible arms.

    Computed from the other arms' sum rather than 1 - P_j, which is 0/0-safe: when every
    other arm's probability underflows, the challenger is uniform over the other eligible arms.
    """
    n_arms = probs.shape[-1]
    off_diagonal = ~np.eye(n_arms, dtype=bool)
    others = mask[..., None, :] & off_diagonal  # [..., j, i]
    weights = np.where(others, probs[..., None, :], 0.0)
    total = weights.sum(axis=-1, keepdims=True)
    count = others.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        uniform = np.where(others, 1.0 / count, 0.0)
        return np.asarray(np.where(total > 0, weights / total, uniform), dtype=np.float64)


class TopTwoThompsonSampling(ThompsonSampling):
    """Beta-Bernoulli top-two TS; ``leader_probability`` = 1 is plain Thompson sampling."""

    name: ClassVar[str] = "top_two_thompson"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {
        **ThompsonSampling.param_specs,
        "leader_probability": ParamSpec(0.5, 0.0, 1.0, doc="share of plays given to the leader"),
    }

    def __init__(self, **params: float) -> None:
        super().__init__(**params)
        self._cache: dict[tuple[ScalarStats, tuple[int, ...]], FloatArray] = {}

    def select(
        self, stats: Stats, rng: np.random.Generator, eligible: BoolArray | None = None
    ) -> Selection:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        leader = super().select(stats, rng, mask).arms
        shape = leader.shape
        need = (rng.random(shape) >= self.params["leader_probability"]) & (mask.sum(-1) > 1)
        arms = np.array(leader, dtype=np.int64)
        a, b = self.posterior(stats)
        # With two eligible arms the challenger is simply the other one: no resampling.
        pair = need & (mask.sum(-1) == 2)
        if pair.any():
            other = np.where(mask & (np.arange(stats.n_arms) != leader[..., None]), 1, 0)
            arms[pair] = np.argmax(other, axis=-1)[pair]
        pending = need & ~pair
        for _ in range(MAX_RESAMPLES):
            if not pending.any():
                break
            sub_mask = mask[pending]
            draws = rng.beta(a[pending], b[pending])
            draws = np.where(sub_mask, draws, -np.inf)
            arms[pending] = np.argmax(draws, axis=-1)
            pending &= arms == leader
        if pending.any():
            arms[pending] = self._challenger(stats, mask, leader, pending, rng)
        return Selection(arms, explored_flags(a / (a + b), mask, arms))

    def _challenger(
        self,
        stats: Stats,
        mask: BoolArray,
        leader: IntArray,
        rows: BoolArray,
        rng: np.random.Generator,
    ) -> IntArray:
        """Challengers drawn from the exact conditional law, for the rows still pending."""
        # Identical states (common: many runs stuck on one leader) share one quadrature.
        keys = np.concatenate([stats.n[rows], stats.total[rows], mask[rows]], axis=-1)
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        k = stats.n_arms
        sub = Stats(unique[:, :k], unique[:, k : 2 * k], np.zeros_like(unique[:, :k]))
        sub_mask = unique[:, 2 * k :] > 0
        weights = challenger_weights(ThompsonSampling.probabilities(self, sub, sub_mask), sub_mask)
        weights = weights[inverse.reshape(-1)]
        law = np.take_along_axis(weights, leader[rows][:, None, None], axis=-2)[:, 0, :]
        cumulative = np.cumsum(law, axis=-1)
        u = rng.random(law.shape[0]) * cumulative[:, -1]
        picked = (cumulative <= u[:, None]).sum(axis=-1)  # first arm whose cumulative exceeds u
        last_positive = law.shape[-1] - 1 - np.argmax(law[:, ::-1] > 0, axis=-1)
        return np.asarray(np.minimum(picked, last_positive), dtype=np.int64)

    def _thompson_probabilities_one(
        self, stats: ScalarStats, eligible: tuple[int, ...]
    ) -> FloatArray:
        """Thompson probabilities of one state, memoised: a live state whose leader is nearly
        certain keeps hitting the fallback, and one quadrature costs ~1 ms."""
        key = (stats, eligible)
        cached = self._cache.get(key)
        if cached is None:
            mask = np.zeros(len(stats.n), dtype=bool)
            mask[list(eligible)] = True
            cached = ThompsonSampling.probabilities(self, stats.to_stats(), mask)
            if len(self._cache) >= FALLBACK_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def probabilities(self, stats: Stats, eligible: BoolArray | None = None) -> FloatArray:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        probs = super().probabilities(stats, mask)
        leader_share = self.params["leader_probability"]
        weights = challenger_weights(probs, mask)
        challenger = (probs[..., :, None] * weights).sum(axis=-2)
        single = mask.sum(axis=-1, keepdims=True) == 1
        mixed = leader_share * probs + (1.0 - leader_share) * challenger
        return np.asarray(np.where(single, probs, mixed), dtype=np.float64)

    def select_one(
        self, stats: ScalarStats, rng: random.Random, eligible: Sequence[int]
    ) -> tuple[int, bool]:
        leader, _ = super().select_one(stats, rng, eligible)
        if len(eligible) == 1 or rng.random() < self.params["leader_probability"]:
            return leader, self.explored_one(stats, eligible, leader)
        if len(eligible) == 2:
            arm = eligible[1] if eligible[0] == leader else eligible[0]
            return arm, self.explored_one(stats, eligible, arm)
        for _ in range(MAX_RESAMPLES):
            arm, _ = super().select_one(stats, rng, eligible)
            if arm != leader:
                return arm, self.explored_one(stats, eligible, arm)
        probs = self._thompson_probabilities_one(stats, tuple(eligible))
        others = [i for i in eligible if i != leader]
        weights = [float(probs[i]) for i in others]
        total = sum(weights)
        if total > 0.0:
            arm = rng.choices(others, weights=weights)[0]
        else:
            arm = others[int(rng.random() * len(others))]
        return arm, self.explored_one(stats, eligible, arm)
