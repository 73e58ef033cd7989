"""Disjoint LinUCB (Li, Chu, Langford and Schapire 2010): optimism with a linear model per arm.

Index of arm k for features x: x.theta_k + alpha sqrt(x^T P_k^-1 x), with P_k = lambda I + A_k
and theta_k = P_k^-1 b_k the ridge estimate (``policies.contextual``). The argmax is played,
ties uniformly at random, so the propensities are 1/|ties| on the tied maxima and 0
elsewhere: exact, but useless for off-policy evaluation, as for UCB1.

Li et al.'s alpha = 1 + sqrt(ln(2/delta)/2) (2.2 for delta = 0.05) holds a confidence level
for rewards in [0, 1]. The default alpha = 1 is one posterior standard deviation of a
unit-variance model. In simulation (docs/policies.md, "Contextual policies") it learns the
three-segment problem in every run, as does any alpha up to 3 (worst run 0.964); alpha = 5
learns more slowly (0.895), and alpha = 0.5 left one run in 40 on a wrong arm. alpha = 0 is
greedy on the ridge estimate and never learns that problem.
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
    IntArray,
    ParamSpec,
    argmax_one,
    argmax_random_ties,
    tie_probabilities,
)
from policies.contextual import LAMBDA_SPEC, ContextualPolicy
from policies.ucb import INDEX_TIE_TOLERANCE


class LinUCB(ContextualPolicy):
    """argmax of x.theta_k + alpha width_k(x) over eligible arms, ties uniform."""

    name: ClassVar[str] = "lin_ucb"
    param_specs: ClassVar[Mapping[str, ParamSpec]] = {
        "alpha": ParamSpec(1.0, 0.0, math.inf, doc="width of the confidence bonus"),
        "lambda": LAMBDA_SPEC,
    }

    def _index(self, means: FloatArray, widths: FloatArray) -> FloatArray:
        return np.asarray(means + self.params["alpha"] * widths, dtype=np.float64)

    def _choose(
        self, means: FloatArray, widths: FloatArray, mask: BoolArray, rng: np.random.Generator
    ) -> IntArray:
        return argmax_random_ties(self._index(means, widths), mask, rng, INDEX_TIE_TOLERANCE)

    def _law(self, means: FloatArray, widths: FloatArray, mask: BoolArray) -> FloatArray:
        return tie_probabilities(self._index(means, widths), mask, INDEX_TIE_TOLERANCE)

    def _choose_one(
        self,
        means: Sequence[float],
        widths: Sequence[float],
        eligible: Sequence[int],
        rng: random.Random,
    ) -> int:
        alpha = self.params["alpha"]
        index = [m + alpha * w for m, w in zip(means, widths, strict=True)]
        return argmax_one(index, eligible, rng, INDEX_TIE_TOLERANCE)
