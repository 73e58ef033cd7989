"""Operator exploration controls layered over any policy: an exploration floor, a burn-in and
per-arm traffic caps.

Floor f: every eligible arm keeps probability >= f. Mixing the policy's law p with the
uniform law over the K eligible arms, weight K f on uniform, gives exactly
f + (1 - K f) p, and sampling the mixture needs no propensities: with probability K f pick a
uniform eligible arm, otherwise ask the policy. f must be <= 1 / K (at 1 / K it is uniform).
Burn-in N: while some eligible arm has fewer than N decisions, route uniformly over the
eligible arms, so every arm gets a first look before the policy's preferences kick in.
Caps c (``max_share``): the law (floored policy, or burn-in's uniform) is capped arm by arm
and the excess redistributed among the uncapped arms in proportion to their probabilities
(uniformly when they have none), repeated until no arm exceeds its cap ("water filling").
When every eligible arm is capped and the caps sum below 1 (the others excluded by the
request, quarantined or excluded by an objective constraint), no law over the eligible arms
respects them all: every eligible arm gets exactly its cap and the leftover
m = 1 - sum(caps) goes to the experiment's fallback arm (``fallback``: eligible or not, it
serves m on top of its own share). A decision is then drawn from that whole law with one
uniform: below 1 - m the bandit's own (capped) decision, above it the fallback
(``REASON_FALLBACK``). The caller passes ``fallback=None`` when the fallback arm cannot
serve the decision (the request excludes it, or it is disabled); then, and only then, the
caps are relaxed in proportion, q = c / sum(c). Sampling the capped law needs its
propensities (a categorical draw), unlike the floor.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

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


MAX_SHARE_FIELD = "max_share"
#: Caps whose sum is within this of 1 leave nothing over (the experiment's validation
#: accepts caps summing to 1 - 1e-12 for caps written as decimals).
CAP_SLACK = 1e-12


def cap_leftover(eligible: Sequence[int], caps: Mapping[int, float]) -> float:
    """The traffic no eligible arm may take: m = 1 - sum of their caps when every eligible
    arm is capped and the caps sum below 1 (by more than ``CAP_SLACK``), else 0.

    It does not depend on the policy's law: when it is positive every eligible arm is at its
    cap, whatever the policy says."""
    total = 0.0
    for i in eligible:
        cap = caps.get(i)
        if cap is None:
            return 0.0
        total += cap
    leftover = 1.0 - total
    return leftover if eligible and leftover > CAP_SLACK else 0.0


def cap_probabilities_one(
    probs: Sequence[float],
    eligible: Sequence[int],
    caps: Mapping[int, float],
    fallback: int | None = None,
) -> tuple[float, ...]:
    """``probs`` (a law over ``eligible``) with each capped arm at most its cap, the excess
    redistributed in proportion among the other eligible arms (module docstring).

    Arms other than the eligible ones and ``fallback`` get probability 0. When every
    eligible arm is capped and the caps sum below 1, ``fallback`` gets the leftover
    (``cap_leftover``) on top of its own share; with ``fallback=None`` the caps are relaxed in
    proportion instead. The result sums to 1.
    """
    out = [0.0] * len(probs)
    capped = {i: caps[i] for i in eligible if i in caps}
    if not capped:
        for i in eligible:
            out[i] = probs[i]
        return tuple(out)
    fixed: dict[int, float] = {}
    free = list(eligible)
    while True:
        mass = 1.0 - sum(fixed.values())
        if not free:  # every eligible arm is at its cap and they sum below 1
            total = sum(fixed.values())
            leftover = 1.0 - total
            if fallback is not None and leftover > CAP_SLACK:  # the fallback serves the rest
                for i, c in fixed.items():
                    out[i] = c
                out[fallback] += leftover
                return tuple(out)
            for i, c in fixed.items():  # no fallback may serve: relax them in proportion
                out[i] = c / total
            return tuple(out)
        weight = sum(probs[i] for i in free)
        if weight > 0.0:
            share = {i: probs[i] * mass / weight for i in free}
        else:  # the policy gives the uncapped arms nothing: share the excess evenly
            share = dict.fromkeys(free, mass / len(free))
        over = [i for i in free if i in capped and share[i] > capped[i]]
        if not over:
            break
        for i in over:
            fixed[i] = capped[i]
        free = [i for i in free if i not in fixed]
    for i, c in fixed.items():
        out[i] = c
    for i, q in share.items():
        out[i] = q
    return tuple(out)


def cap_probabilities(
    probs: FloatArray,
    eligible: BoolArray | None,
    caps: Mapping[int, float],
    fallback: int | None = None,
) -> FloatArray:
    """``cap_probabilities_one`` row by row over a batch of laws (``fallback`` the same for
    every row: None where it may not serve, and the caps are relaxed).

    Rows are independent, so this loops in Python: it serves analyses (promotion), not the
    live path.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if not caps:
        return probs
    mask = np.broadcast_to(eligible_mask(probs.shape[-1], eligible, probs.shape[:-1]), probs.shape)
    flat = probs.reshape(-1, probs.shape[-1])
    flat_mask = mask.reshape(-1, probs.shape[-1])
    out = np.empty_like(flat)
    for row in range(flat.shape[0]):
        chosen = np.flatnonzero(flat_mask[row]).tolist()
        out[row] = cap_probabilities_one(flat[row].tolist(), chosen, caps, fallback)
    return out.reshape(probs.shape)


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
