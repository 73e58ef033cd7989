"""Policies against theory: regret on Bernoulli problems, drift, and Gaussian convergence.

Every bound is asserted on mean + z * SE over independent vectorised runs (SE = standard
deviation over runs / sqrt(runs)), z = 3: the claim "the expected regret is below the bound"
is then rejected only if the data are 3 standard errors short of supporting it. Fixed seeds.
Lai-Robbins: for any consistent policy, E[regret(T)] / ln T -> C(mu) = sum over suboptimal i
of Delta_i / KL(mu_i, mu*), so C(mu) ln T is the asymptote good policies approach from below.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special

from policies import Policy, Stats, create_policy

Z = 3.0
PROBLEMS = [
    ([0.9, 0.8], 5000),
    ([0.1, 0.05, 0.05, 0.05, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01], 10000),
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], 10000),
]
RUNS = 150


def bernoulli_kl(p: float, q: float) -> float:
    return float(special.rel_entr(p, q) + special.rel_entr(1 - p, 1 - q))


def lai_robbins(means: list[float], horizon: int) -> float:
    best = max(means)
    return sum((best - m) / bernoulli_kl(m, best) for m in means if m < best) * math.log(horizon)


def simulate(
    policy: Policy,
    means: list[float],
    horizon: int,
    runs: int,
    seed: int,
    means_after: list[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-regret per run, per step (shape (horizon, runs)), and final pulls per arm.

    ``means_after`` (if given) replaces the means at horizon // 2: a piecewise-stationary
    problem whose best arm changes halfway.
    """
    rng = np.random.default_rng(seed)
    mu = np.asarray(means, dtype=np.float64)
    stats = Stats.zeros(len(means), (runs,))
    regret = np.empty((horizon, runs))
    pulls = np.zeros((runs, len(means)))
    rows = np.arange(runs)
    for t in range(horizon):
        if means_after is not None and t == horizon // 2:
            mu = np.asarray(means_after, dtype=np.float64)
        arms = policy.select(stats, rng).arms
        rewards = (rng.random(runs) < mu[arms]).astype(np.float64)
        stats = policy.update(stats, arms, rewards)
        regret[t] = mu.max() - mu[arms]
        pulls[rows, arms] += 1.0
    return regret, pulls


def upper(values: np.ndarray) -> float:
    """mean + Z standard errors over runs."""
    return float(values.mean() + Z * values.std(ddof=1) / math.sqrt(len(values)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["thompson", "kl_ucb"])
@pytest.mark.parametrize(("means", "horizon"), PROBLEMS)
def test_regret_below_lai_robbins_asymptote(name: str, means: list[float], horizon: int) -> None:
    regret, _ = simulate(create_policy(name, {}), means, horizon, RUNS, seed=101)
    total = regret.sum(axis=0)
    assert upper(total) < lai_robbins(means, horizon), (total.mean(), lai_robbins(means, horizon))


@pytest.mark.slow
@pytest.mark.parametrize(("means", "horizon"), [PROBLEMS[0], PROBLEMS[2]])
def test_ucb1_below_finite_time_bound(means: list[float], horizon: int) -> None:
    # Auer, Cesa-Bianchi and Fischer (2002), Theorem 1, for UCB1 (c = 1).
    gaps = [max(means) - m for m in means if m < max(means)]
    bound = sum(8 * math.log(horizon) / d for d in gaps) + (1 + math.pi**2 / 3) * sum(gaps)
    regret, _ = simulate(create_policy("ucb1", {"c": 1.0}), means, horizon, RUNS, seed=102)
    assert upper(regret.sum(axis=0)) < bound


@pytest.mark.slow
def test_decaying_epsilon_greedy_is_sublinear() -> None:
    means, horizon = [0.9, 0.6, 0.3], 5000
    regret, _ = simulate(create_policy("decaying_epsilon_greedy", {}), means, horizon, 200, 103)
    cumulative = regret.cumsum(axis=0)
    checkpoints = [500, 1000, 2000, 5000]
    per_step = [cumulative[t - 1] / t for t in checkpoints]
    for earlier, later in itertools.pairwise(per_step):
        # regret(T)/T strictly decreasing: the drop exceeds Z standard errors of the drop
        drop = earlier - later
        assert drop.mean() - Z * drop.std(ddof=1) / math.sqrt(len(drop)) > 0
    # uniform play loses mean(Delta) per step; sublinear regret is far below that line
    linear = horizon * float(np.mean([max(means) - m for m in means]))
    assert upper(cumulative[-1]) < 0.1 * linear


@pytest.mark.slow
@pytest.mark.parametrize("name", ["thompson", "gaussian_thompson", "epsilon_greedy"])
def test_discounting_wins_when_the_best_arm_changes(name: str) -> None:
    before, after, horizon = [0.8, 0.3], [0.3, 0.8], 2000
    stationary, _ = simulate(create_policy(name, {}), before, horizon, RUNS, 104, after)
    discounted, _ = simulate(
        create_policy(name, {"gamma": 0.98}), before, horizon, RUNS, 105, after
    )
    gain = stationary.sum(axis=0) - discounted.sum(axis=0)  # independent runs: SE of difference
    se = math.sqrt(
        stationary.sum(axis=0).var(ddof=1) / RUNS + discounted.sum(axis=0).var(ddof=1) / RUNS
    )
    assert gain.mean() > Z * se, (stationary.sum(axis=0).mean(), discounted.sum(axis=0).mean())


@pytest.mark.slow
def test_gaussian_thompson_converges_with_unequal_variances() -> None:
    means, sds, horizon, runs = np.array([1.0, 0.5, 0.0]), np.array([1.0, 2.0, 0.5]), 3000, 200
    policy = create_policy("gaussian_thompson", {})
    rng = np.random.default_rng(106)
    stats = Stats.zeros(3, (runs,))
    pulls = np.zeros((horizon, runs), dtype=np.int64)
    for t in range(horizon):
        arms = policy.select(stats, rng).arms
        rewards = means[arms] + sds[arms] * rng.standard_normal(runs)
        stats = policy.update(stats, arms, rewards)
        pulls[t] = arms
    # Honda and Takemura (2014): with unknown variances a consistent policy pulls arm i about
    # ln T / K_inf(i) times, K_inf = ln(1 + Delta^2 / sigma^2) / 2.
    k_inf = 0.5 * np.log1p((means[0] - means[1:]) ** 2 / sds[1:] ** 2)
    asymptote = float((math.log(horizon) / k_inf).sum())
    suboptimal = (pulls != 0).sum(axis=0).astype(np.float64)
    assert upper(suboptimal) < asymptote, (suboptimal.mean(), asymptote)
    # and at the end the best arm takes nearly all traffic: over the last 10% of the horizon,
    # the asymptote's derivative allows sum_i 1/(t K_inf) per step, i.e. ~1% here
    late = (pulls[-horizon // 10 :] == 0).mean(axis=0)
    allowed = float((np.log(1 / 0.9) / k_inf).sum()) / (horizon / 10)
    assert late.mean() - Z * late.std(ddof=1) / math.sqrt(runs) > 1 - 3 * allowed - 0.02
