"""Operator exploration controls layered over any policy: an exploration floor and a burn-in.

Floor f: every eligible arm keeps probability >= f. Mixing the policy's law p with the
uniform law over the K eligible arms, weight K f on uniform, gives exactly
f + (1 - K f) p, and sampling the mixture needs no propensities: with probability K f pick a
uniform eligible arm, otherwise ask the policy. f must be <= 1 / K (at 1 / K it is uniform).
Burn-in N: while some eligible arm has fewer than N decisions, route uniformly over the
eligible arms, so every arm gets a first look before the policy's preferences kick in.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from policies.base import (
    BoolArray,
    FloatArray,
    Policy,
    PolicyConfigError,
    ScalarStats,
    Selection,
    Stats,
    eligible_mask,
    explored_flags,
    pick_uniform,
)

FLOOR_FIELD = "exploration_floor"
BURN_IN_FIELD = "burn_in"
#: Slack for floors written as decimals, e.g. 0.333333333333 with three arms.
FLOOR_SLACK = 1e-12


def check_floor(floor: float, n_eligible: int) -> float:
    """The floor as a float in [0, 1/K]; PolicyConfigError("exploration_floor") otherwise."""
    floor = float(floor)
    if n_eligible < 1:
        raise PolicyConfigError("eligible", "at least one arm must be eligible")
    if not (0.0 <= floor <= 1.0 / n_eligible + FLOOR_SLACK):
        raise PolicyConfigError(
            FLOOR_FIELD, f"{floor!r} is outside [0, 1/K] with K={n_eligible} eligible arms"
        )
    return min(floor, 1.0 / n_eligible)


def check_burn_in(burn_in: float) -> int:
    if not (burn_in >= 0 and float(burn_in).is_integer()):
        raise PolicyConfigError(BURN_IN_FIELD, f"{burn_in!r} is not a whole number >= 0")
    return int(burn_in)


def floor_probabilities(probs: FloatArray, eligible: BoolArray | None, floor: float) -> FloatArray:
    """f + (1 - K f) p on eligible arms (K per batch element), 0 on ineligible ones."""
    probs = np.asarray(probs, dtype=np.float64)
    mask = eligible_mask(probs.shape[-1], eligible, probs.shape[:-1])
    k = mask.sum(axis=-1, keepdims=True)
    floor = check_floor(floor, int(k.max()))
    mixed = floor + (1.0 - k * floor) * np.where(mask, probs, 0.0)
    return np.asarray(np.where(mask, mixed, 0.0), dtype=np.float64)


def floor_probabilities_one(
    probs: Sequence[float], eligible: Sequence[int], floor: float
) -> tuple[float, ...]:
    """Scalar twin of ``floor_probabilities`` for one state."""
    k = len(eligible)
    floor = check_floor(floor, k)
    chosen = set(eligible)
    return tuple(floor + (1.0 - k * floor) * p if i in chosen else 0.0 for i, p in enumerate(probs))


def in_burn_in(decisions: FloatArray, eligible: BoolArray | None, burn_in: int) -> BoolArray:
    """Per batch element: does some eligible arm have fewer than ``burn_in`` decisions?"""
    decisions = np.asarray(decisions, dtype=np.float64)
    mask = eligible_mask(decisions.shape[-1], eligible, decisions.shape[:-1])
    fewest = np.where(mask, decisions, np.inf).min(axis=-1)
    return np.asarray(fewest < check_burn_in(burn_in), dtype=bool)


def in_burn_in_one(decisions: Sequence[float], eligible: Sequence[int], burn_in: int) -> bool:
    return min(decisions[i] for i in eligible) < check_burn_in(burn_in)


def controlled_probabilities(
    policy: Policy,
    stats: Stats,
    eligible: BoolArray | None = None,
    floor: float = 0.0,
    burn_in: int = 0,
    decisions: FloatArray | None = None,
) -> FloatArray:
    """The law of ``select_controlled``: uniform in burn-in, else the floored policy law.

    ``decisions`` counts decisions per arm (defaults to ``stats.n``).
    """
    mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
    uniform = mask / mask.sum(axis=-1, keepdims=True)
    burning = in_burn_in(stats.n if decisions is None else decisions, mask, burn_in)
    policy_law = floor_probabilities(policy.probabilities(stats, mask), mask, floor)
    return np.asarray(np.where(burning[..., None], uniform, policy_law), dtype=np.float64)


def select_controlled(
    policy: Policy,
    stats: Stats,
    rng: np.random.Generator,
    eligible: BoolArray | None = None,
    floor: float = 0.0,
    burn_in: int = 0,
    decisions: FloatArray | None = None,
) -> Selection:
    """Sample the controlled law without computing propensities (see the module docstring)."""
    mask = eligible_mask(stats.n_arms, eligible, stats.batch_shape)
    k = mask.sum(axis=-1)
    floor = check_floor(floor, int(k.max()))
    burning = in_burn_in(stats.n if decisions is None else decisions, mask, burn_in)
    choice = policy.select(stats, rng, mask)
    if floor == 0.0 and not burning.any():
        return choice
    uniform_pick = burning | (rng.random(stats.batch_shape) < k * floor)
    arms = np.where(uniform_pick, pick_uniform(mask, rng), choice.arms)
    explored = np.where(
        uniform_pick, explored_flags(policy.greedy_values(stats), mask, arms), choice.explored
    )
    return Selection(np.asarray(arms, dtype=np.int64), np.asarray(explored, dtype=bool))


def select_one_controlled(
    policy: Policy,
    stats: ScalarStats,
    rng: random.Random,
    eligible: Sequence[int],
    floor: float = 0.0,
    burn_in: int = 0,
    decisions: Sequence[float] | None = None,
) -> tuple[int, bool]:
    """Scalar twin of ``select_controlled``: one live decision, (arm, explored)."""
    k = len(eligible)
    floor = check_floor(floor, k)
    burning = burn_in > 0 and in_burn_in_one(
        stats.n if decisions is None else decisions, eligible, burn_in
    )
    if burning or (floor > 0.0 and rng.random() < k * floor):
        arm = eligible[int(rng.random() * k)]
        return arm, policy.explored_one(stats, eligible, arm)
    return policy.select_one(stats, rng, eligible)
