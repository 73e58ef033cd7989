"""``python -m simulations.benchmark``: simulated decisions per second of the vectorised runner.

The figure that matters to a researcher is how long a study takes: runs x horizon decisions
over one policy. Where ``mabwiser`` is importable, the same problem is also run through its
sequential predict/partial_fit loop (the way a study is written without vectorisation) and
the two rates are reported as a ratio. MABWiser is slow per step, so it runs fewer steps;
rates, not totals, are compared.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulations.environments import Environment
from simulations.runner import simulate
from simulations.study import make_policy


@dataclass(frozen=True)
class Timing:
    label: str
    decisions: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds if self.seconds > 0 else float("inf")


def problem_means(arms: int) -> list[float]:
    """Evenly spaced Bernoulli means in [0.1, 0.9]: a generic problem, every arm distinct."""
    return [float(x) for x in np.linspace(0.1, 0.9, arms)]


def time_runner(policy: str, runs: int, horizon: int, arms: int, seed: int) -> Timing:
    env = Environment.bernoulli(problem_means(arms))
    start = time.perf_counter()
    simulate(make_policy(policy, {}), env, horizon=horizon, runs=runs, seed=seed, checkpoints=10)
    return Timing(f"simulations ({policy})", runs * horizon, time.perf_counter() - start)


MABWISER_POLICIES = {
    "thompson": "ThompsonSampling",
    "ucb1": "UCB1",
    "epsilon_greedy": "EpsilonGreedy",
}


def time_mabwiser(policy: str, steps: int, arms: int, seed: int) -> Timing | None:
    """MABWiser's sequential loop on the same problem; None when it is not installed."""
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    if policy not in MABWISER_POLICIES:
        return None
    means = problem_means(arms)
    rng = np.random.default_rng(seed)
    learning = getattr(LearningPolicy, MABWISER_POLICIES[policy])()
    mab = MAB(arms=list(range(arms)), learning_policy=learning, seed=seed)
    # MABWiser must be fitted before it predicts: one pull of every arm, as UCB starts.
    mab.fit(decisions=list(range(arms)), rewards=[int(rng.random() < m) for m in means])
    start = time.perf_counter()
    for _ in range(steps):
        arm = int(mab.predict())
        mab.partial_fit([arm], [int(rng.random() < means[arm])])
    return Timing(
        f"mabwiser sequential ({learning.__class__.__name__})", steps, time.perf_counter() - start
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.benchmark", description=__doc__)
    parser.add_argument("--policy", default="thompson")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=10000)
    parser.add_argument("--arms", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mabwiser-steps", type=int, default=2000, help="0 to skip MABWiser")
    args = parser.parse_args(argv)

    ours = time_runner(args.policy, args.runs, args.horizon, args.arms, args.seed)
    print(
        f"{ours.label}: {args.runs} runs x {args.horizon} steps x {args.arms} arms in "
        f"{ours.seconds:.2f} s = {ours.rate:,.0f} decisions/s"
    )
    if args.mabwiser_steps > 0:
        theirs = time_mabwiser(args.policy, args.mabwiser_steps, args.arms, args.seed)
        if theirs is None:
            print(
                "mabwiser: not installed (or no equivalent policy); no comparison", file=sys.stderr
            )
        else:
            print(
                f"{theirs.label}: {theirs.decisions} steps in {theirs.seconds:.2f} s = "
                f"{theirs.rate:,.0f} decisions/s"
            )
            print(f"ratio: simulations is {ours.rate / theirs.rate:,.0f}x faster per decision")
    return 0


if __name__ == "__main__":
    sys.exit(main())
