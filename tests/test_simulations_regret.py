"""Regret studies of the serving policies against theory, delays, and reproducibility.

Lai-Robbins: any uniformly good policy has regret >= (C(mu) - o(1)) ln T; Thompson sampling
and KL-UCB reach it asymptotically, and at these finite horizons their regret lies below the
asymptote C(mu) ln T (Kaufmann et al. 2012, Garivier & Cappé 2011). We assert the one-sided
bound mean + z*SE < C(mu) ln T with z = 3 (a one-sided 99.87 % statement about the mean).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies import create_policy
from simulations.environments import Environment, FixedDelay, GeometricDelay
from simulations.runner import RewardsInFlight, simulate
from simulations.theory import bernoulli_kl, lai_robbins_constant

Z = 3.0
TWO_ARMS = [0.9, 0.8]
TEN_LOW = [0.1, 0.05, 0.05, 0.05, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01]
NINE = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_lai_robbins_constant_by_hand() -> None:
    # [0.9, 0.8]: one suboptimal arm, C = 0.1 / kl(0.8, 0.9) with kl written out.
    kl = 0.8 * math.log(0.8 / 0.9) + 0.2 * math.log(0.2 / 0.1)
    assert lai_robbins_constant(TWO_ARMS) == pytest.approx(0.1 / kl, rel=1e-12)
    assert bernoulli_kl(0.3, 0.3) == 0.0
    assert lai_robbins_constant([1.0, 0.5]) == 0.0  # KL infinite: no logarithmic term


@pytest.mark.slow
@pytest.mark.parametrize(
    ("policy", "means", "horizon", "runs"),
    [
        ("thompson", TWO_ARMS, 5000, 200),
        ("thompson", TEN_LOW, 10000, 200),
        ("thompson", NINE, 10000, 200),
        # KL-UCB costs ~4x Thompson per step; 100 runs keep the suite short.
        ("kl_ucb", TWO_ARMS, 5000, 100),
        ("kl_ucb", TEN_LOW, 10000, 100),
        ("kl_ucb", NINE, 10000, 100),
    ],
)
def test_regret_below_lai_robbins(policy: str, means: list[float], horizon: int, runs: int) -> None:
    result = simulate(
        create_policy(policy, {}),
        Environment.bernoulli(means),
        horizon=horizon,
        runs=runs,
        seed=20240601,
        checkpoints=10,
    )
    final = result.regret[:, -1]
    se = final.std(ddof=1) / math.sqrt(runs)
    bound = lai_robbins_constant(means) * math.log(horizon)
    assert final.mean() + Z * se < bound, (final.mean(), se, bound)
    # A policy that learns nothing has regret T * mean gap; the study must be far from it.
    assert final.mean() < 0.2 * horizon * (max(means) - float(np.mean(means)))


@pytest.mark.slow
def test_delayed_feedback_costs_thompson_only_modestly() -> None:
    """Expectation (Joulani et al. 2013, additive delay penalty): with every reward d steps late,
    each suboptimal arm gets at most about d extra plays while its rewards are in flight, so
    regret rises by at most d * sum of gaps = 50 * 0.1 = 5 on [0.9, 0.8].

    And the delay must be real: with d = 200 the first 200 decisions see no feedback at all,
    so they are uniform and cost 200 * 0.1 / 2 = 10 on their own, more than the undelayed
    policy's whole regret (about 9) would allow if the delay were ignored.
    """
    runs, horizon = 400, 5000
    gap = 0.1

    def final_regret(delay: FixedDelay | None) -> np.ndarray:
        env = Environment.bernoulli(TWO_ARMS, delay=delay)
        policy = create_policy("thompson", {})
        return simulate(policy, env, horizon=horizon, runs=runs, seed=7, checkpoints=5).regret[
            :, -1
        ]

    base = final_regret(None)
    late = final_regret(FixedDelay(50))
    diff = late - base  # paired by run: common random numbers
    se = diff.std(ddof=1) / math.sqrt(runs)
    assert diff.mean() + Z * se <= 50 * gap, (diff.mean(), se)

    blind = final_regret(FixedDelay(200))
    assert blind.mean() - Z * blind.std(ddof=1) / math.sqrt(runs) >= 200 * gap / 2


def test_geometric_delays_deliver_every_reward_once_at_its_step() -> None:
    """The ring of rewards in flight: each pushed reward pops exactly at step + delay."""
    rng = np.random.default_rng(3)
    runs, steps = 50, 300
    model = GeometricDelay(10.0)
    ring = RewardsInFlight(model.max_delay, runs)
    expected: dict[tuple[int, int], list[float]] = {}
    seen: dict[tuple[int, int], list[float]] = {}
    for step in range(steps + model.max_delay + 1):
        if step < steps:
            delays = model.sample(runs, rng)
            assert delays is not None
            rewards = rng.random(runs)
            sent = rng.random(runs) < 0.9
            ring.push(step, np.zeros(runs, dtype=np.int64), rewards, delays, sent)
            for run in np.flatnonzero(sent):
                expected.setdefault((int(run), step + int(delays[run])), []).append(
                    float(rewards[run])
                )
        for _, lane_rewards, observed in ring.pop(step):
            for run in np.flatnonzero(observed):
                seen.setdefault((int(run), step), []).append(float(lane_rewards[run]))
    assert {k: sorted(v) for k, v in seen.items()} == {k: sorted(v) for k, v in expected.items()}


def test_geometric_delay_mean() -> None:
    # Mean 20 on {0, 1, ...}: SE of the mean of 200k draws is sqrt(20*21/200000) ~ 0.046.
    delays = GeometricDelay(20.0).sample(200_000, np.random.default_rng(0))
    assert delays is not None
    assert abs(delays.mean() - 20.0) < Z * math.sqrt(20 * 21 / 200_000)


def test_seeded_runs_reproduce_bit_for_bit() -> None:
    env = Environment.bernoulli([0.5, 0.45, 0.4], delay=GeometricDelay(5.0))

    def run(seed: int) -> np.ndarray:
        policy = create_policy("thompson", {})
        return simulate(policy, env, horizon=500, runs=64, seed=seed).regret

    first, second, other = run(11), run(11), run(12)
    assert first.tobytes() == second.tobytes()
    assert first.tobytes() != other.tobytes()
