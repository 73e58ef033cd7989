"""Epsilon-greedy, fixed and decaying: the baseline every smarter policy must beat.

With probability eps the arm is uniform over eligible arms, otherwise the greedy arm (highest
empirical mean among rewarded arms, ties uniform; uniform if no eligible arm has a reward
yet). A fixed eps explores forever, so regret grows linearly; eps_t = min(1, c K / t) makes
exploration shrink like 1/t and regret grow only logarithmically once c is large enough
(Auer et al. 2002 need c > 5 / d^2 for the guarantee; c = 1 is the customary default).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from policies.base import (
    BoolArray,
    FloatArray,
    ParamSpec,
    Policy,
    ScalarStats,
    Selection,
    Stats,
    argmax_one,
    argmax_random_ties,
    eligible_mask,
    explored_flags,
    pick_uniform,
    positive,
    tie_probabilities,
)


class EpsilonGreedy(Policy):
    """Explore uniformly with probability ``epsilon``, else exploit."""

    name: ClassVar[str] = "epsilon_greedy"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {
        "epsilon": ParamSpec(0.1, 0.0, 1.0, doc="probability of a uniform exploratory arm"),
    }

    def epsilon(self, stats: Stats, mask: BoolArray) -> FloatArray:
        """Exploration probability per batch element, shape batch + (1,)."""
        return np.full((*stats.batch_shape, 1), self.params["epsilon"])

    def epsilon_one(self, stats: ScalarStats, n_eligible: int) -> float:
        return self.params["epsilon"]

    def select(
        self, stats: Stats, rng: np.random.Generator, eligible: BoolArray | None = None
    ) -> Selection:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        greedy_values = self.greedy_values(stats)
        explore = rng.random(stats.batch_shape) < self.epsilon(stats, mask)[..., 0]
        uniform = pick_uniform(mask, rng)
        greedy = argmax_random_ties(greedy_values, mask, rng)
        arms = np.where(explore, uniform, greedy)
        return Selection(arms, explored_flags(greedy_values, mask, arms))

    def probabilities(self, stats: Stats, eligible: BoolArray | None = None) -> FloatArray:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        eps = self.epsilon(stats, mask)
        uniform = mask / mask.sum(axis=-1, keepdims=True)
        greedy = tie_probabilities(self.greedy_values(stats), mask)
        return np.asarray(eps * uniform + (1.0 - eps) * greedy, dtype=np.float64)

    def select_one(
        self, stats: ScalarStats, rng: random.Random, eligible: Sequence[int]
    ) -> tuple[int, bool]:
        if rng.random() < self.epsilon_one(stats, len(eligible)):
            arm = eligible[int(rng.random() * len(eligible))]
        else:
            values = [self.greedy_value_one(stats, i) for i in range(len(stats.n))]
            arm = argmax_one(values, eligible, rng)
        return arm, self.explored_one(stats, eligible, arm)


class DecayingEpsilonGreedy(EpsilonGreedy):
    """eps_t = min(1, c K / t): K eligible arms, t total (discounted) plays so far."""

    name: ClassVar[str] = "decaying_epsilon_greedy"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {
        "c": positive(1.0, doc="exploration scale: eps_t = min(1, c K / t)"),
    }

    def epsilon(self, stats: Stats, mask: BoolArray) -> FloatArray:
        t = stats.n.sum(axis=-1, keepdims=True)
        scaled = self.params["c"] * mask.sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore"):
            return np.asarray(np.where(t > scaled, scaled / t, 1.0), dtype=np.float64)

    def epsilon_one(self, stats: ScalarStats, n_eligible: int) -> float:
        t = sum(stats.n)
        scaled = self.params["c"] * n_eligible
        return scaled / t if t > scaled else 1.0
