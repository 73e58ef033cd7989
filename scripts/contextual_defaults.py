"""The simulations behind the contextual policies' defaults (docs/policies.md).

    .venv/bin/python scripts/contextual_defaults.py            # both problems, ~1 minute

Two problems, every run with fixed seeds, vectorised over runs:

* segments: 3 arms, 3 equally likely segments (features: intercept + one-hot segment),
  segment s's best arm is s with Bernoulli 0.7 against 0.3; the share of the last 1,000 of
  4,000 decisions that pick the segment's best arm, mean and worst over 40 runs;
* linear: d = 10 (intercept + 9 N(0, 1/9) features), 5 arms with coefficients ~ N(0, 0.25),
  Gaussian noise of sd 0.5, T = 4,000; pseudo-regret over each half, mean over 30 runs.
"""

from __future__ import annotations

import argparse

import numpy as np

from policies import ContextualStats, create_policy

SEGMENT_GRID = [
    *[("lin_ts", {"v": v}) for v in (0.25, 0.5, 1.0, 2.0, 3.0, 5.0)],
    *[("lin_ts", {"lambda": lam}) for lam in (0.1, 10.0)],
    *[("lin_ucb", {"alpha": alpha}) for alpha in (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)],
    *[("lin_ucb", {"lambda": lam}) for lam in (0.1, 10.0)],
    *[("logistic_ts", {"lambda": lam}) for lam in (0.1, 1.0, 10.0)],
]
LINEAR_GRID = [
    *[("lin_ts", {"v": v}) for v in (0.1, 0.25, 0.5, 1.0, 2.0)],
    *[("lin_ts", {"lambda": lam}) for lam in (0.1, 10.0)],
    *[("lin_ucb", {"alpha": alpha}) for alpha in (0.5, 1.0, 2.0, 3.0)],
]


def segments(name: str, params: dict[str, float], runs: int, rounds: int) -> np.ndarray:
    """Per run, the share of the last 1,000 decisions that pick the segment's best arm."""
    policy = create_policy(name, params, contextual=True)
    rng = np.random.default_rng(0)
    stats = ContextualStats.zeros(3, 4, (runs,))
    hits = np.zeros(runs)
    rows = np.arange(runs)
    for t in range(rounds):
        segment = rng.integers(0, 3, runs)
        x = np.zeros((runs, 4))
        x[:, 0] = 1.0
        x[rows, segment + 1] = 1.0
        arms = policy.select(stats, x, rng).arms
        rewards = (rng.random(runs) < np.where(arms == segment, 0.7, 0.3)).astype(np.float64)
        policy.update_inplace(stats, arms, x, rewards)
        if t >= rounds - 1000:
            hits += arms == segment
    return hits / 1000


def linear(
    name: str, params: dict[str, float], runs: int, rounds: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run, the pseudo-regret of the first and of the second half, and uniform play's."""
    policy = create_policy(name, params, contextual=True)
    rng = np.random.default_rng(1)
    dim, n_arms = 10, 5
    weights = rng.normal(0.0, 0.5, (runs, n_arms, dim))
    stats = ContextualStats.zeros(n_arms, dim, (runs,))
    regret = np.zeros((rounds, runs))
    uniform = np.zeros(runs)
    rows = np.arange(runs)
    for t in range(rounds):
        x = np.column_stack([np.ones(runs), rng.normal(0.0, 1.0 / 3.0, (runs, dim - 1))])
        means = (weights * x[:, None, :]).sum(axis=-1)
        arms = policy.select(stats, x, rng).arms
        chosen = means[rows, arms]
        policy.update_inplace(stats, arms, x, chosen + rng.normal(0.0, 0.5, runs))
        regret[t] = means.max(axis=-1) - chosen
        uniform += means.max(axis=-1) - means.mean(axis=-1)
    half = rounds // 2
    return regret[:half].sum(axis=0), regret[half:].sum(axis=0), uniform


def label(name: str, params: dict[str, float]) -> str:
    return name + "".join(f" {key}={value:g}" for key, value in params.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4000)
    args = parser.parse_args(argv)
    print("segments: share of the last 1,000 decisions right, over 40 runs")
    for name, params in SEGMENT_GRID:
        share = segments(name, params, 40, args.rounds)
        print(f"  {label(name, params):28} mean {share.mean():.3f}  worst {share.min():.3f}")
    print("linear, d = 10, 5 arms: pseudo-regret per half, mean over 30 runs")
    for name, params in LINEAR_GRID:
        first, second, uniform = linear(name, params, 30, args.rounds)
        print(
            f"  {label(name, params):28} first {first.mean():7.1f}  second {second.mean():6.1f}"
            f"  total {first.mean() + second.mean():7.1f}  (uniform play {uniform.mean():.0f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
