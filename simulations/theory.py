"""What theory says a good policy should achieve, to put beside what it did achieve."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from simulations.environments import FloatArray


def bernoulli_kl(p: float, q: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(q)), with 0 log 0 = 0."""
    total = 0.0
    if p > 0:
        total += p * math.log(p / q)
    if p < 1:
        total += (1 - p) * math.log((1 - p) / (1 - q))
    return total


def lai_robbins_constant(means: Sequence[float] | FloatArray) -> float:
    """C(mu) = sum over suboptimal arms of gap / KL(mu_k, mu*) (Lai & Robbins 1985).

    Any uniformly good policy has regret >= (C(mu) - o(1)) ln T on Bernoulli arms; Thompson
    sampling and KL-UCB attain it asymptotically.
    """
    values = np.asarray(means, dtype=np.float64)
    best = float(values.max())
    constant = 0.0
    for mu in values:
        gap = best - float(mu)
        if gap <= 0:
            continue
        if best >= 1.0:
            continue  # KL(mu, 1) is infinite: one failure tells the arm apart, no log term
        constant += gap / bernoulli_kl(float(mu), best)
    return constant


def lai_robbins_regret(means: Sequence[float] | FloatArray, steps: FloatArray) -> FloatArray:
    """The asymptote C(mu) ln t at each step count t (0 where ln t < 0)."""
    logs = np.log(np.maximum(np.asarray(steps, dtype=np.float64), 1.0))
    return lai_robbins_constant(means) * logs
