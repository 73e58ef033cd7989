"""UCB1 (Auer, Cesa-Bianchi and Fischer 2002): optimism in the face of uncertainty.

Deterministic given the statistics, so its propensities are 1 on the top index (shared
uniformly among ties) and 0 elsewhere: fine for routing, useless for off-policy evaluation.
"""

from __future__ import annotations

import math
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
    tie_probabilities,
)

#: Relative tolerance under which two indices tie (their logs/roots may differ in the last bit
#: between numpy and ``math``); far below any meaningful difference in an index.
INDEX_TIE_TOLERANCE = 1e-12


def plays(stats: Stats) -> FloatArray:
    """t = total (possibly discounted) plays over all arms, at least 1 so that ln t >= 0."""
    return np.asarray(np.maximum(stats.n.sum(axis=-1, keepdims=True), 1.0), dtype=np.float64)


class UCB1(Policy):
    """Index mean + c sqrt(2 ln t / n); arms never rewarded come first (index +inf).

    c = 1 is the UCB1 of the finite-time regret bound; smaller c explores less (and loses the
    guarantee), c = 0 is greedy after one play of each arm.
    """

    name: ClassVar[str] = "ucb1"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {
        "c": ParamSpec(1.0, 0.0, math.inf, doc="width of the confidence bonus"),
    }

    def indices(self, stats: Stats) -> FloatArray:
        log_t = np.log(plays(stats))
        with np.errstate(divide="ignore", invalid="ignore"):
            index = stats.total / stats.n + self.params["c"] * np.sqrt(2.0 * log_t / stats.n)
        return np.asarray(np.where(stats.n > 0, index, np.inf), dtype=np.float64)

    def select(
        self, stats: Stats, rng: np.random.Generator, eligible: BoolArray | None = None
    ) -> Selection:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        arms = argmax_random_ties(self.indices(stats), mask, rng, INDEX_TIE_TOLERANCE)
        return Selection(arms, explored_flags(self.greedy_values(stats), mask, arms))

    def probabilities(self, stats: Stats, eligible: BoolArray | None = None) -> FloatArray:
        mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
        return tie_probabilities(self.indices(stats), mask, INDEX_TIE_TOLERANCE)

    def select_one(
        self, stats: ScalarStats, rng: random.Random, eligible: Sequence[int]
    ) -> tuple[int, bool]:
        counts, totals, c = stats.n, stats.total, self.params["c"]
        log_t = math.log(max(sum(counts), 1.0))
        index = [math.inf] * len(counts)
        for i in eligible:
            n = counts[i]
            if n > 0:
                index[i] = totals[i] / n + c * math.sqrt(2.0 * log_t / n)
        arm = argmax_one(index, eligible, rng, INDEX_TIE_TOLERANCE)
        return arm, self.explored_one(stats, eligible, arm)
