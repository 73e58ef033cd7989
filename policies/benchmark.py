"""Cost of one decision, live and batched, per policy: ``python -m policies.benchmark``.

Three numbers per policy on a 5-arm Bernoulli problem: a live decision via the scalar
``select_one`` and via the vectorised ``select`` on batch shape (), and select + update per
(run, step) over a batch of 10,000 runs. If MABWiser is installed, the same run times its
ThompsonSampling predict + partial_fit step for a ratio. Timings are machine-dependent and
never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable

import numpy as np

from policies.base import Policy, Stats
from policies.registry import POLICY_NAMES, create_policy

MEANS = np.array([0.05, 0.04, 0.06, 0.03, 0.05])


def _best_of(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Seconds per call: the best of ``repeat`` batches (least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _warm_state(policy: Policy, runs: int, steps: int, seed: int) -> Stats:
    """Statistics after ``steps`` decisions, so timings see a realistic (not empty) state."""
    rng = np.random.default_rng(seed)
    stats = Stats.zeros(len(MEANS), (runs,))
    for _ in range(steps):
        arms = policy.select(stats, rng).arms
        stats = policy.update(stats, arms, (rng.random(runs) < MEANS[arms]).astype(np.float64))
    return stats


def measure(name: str, runs: int, steps: int, quick: bool) -> dict[str, float]:
    policy = create_policy(name, {})
    live = _warm_state(policy, 1, 200, seed=1)
    single = Stats(live.n[0], live.total[0], live.total_sq[0])
    row, py_rng, rng = single.row(), random.Random(2), np.random.default_rng(3)
    eligible = list(range(len(MEANS)))
    repeat = 3 if quick else 7
    one = _best_of(lambda: policy.select_one(row, py_rng, eligible), 2000, repeat)
    vector_one = _best_of(lambda: policy.select(single, rng), 500, repeat)
    propensities = _best_of(lambda: policy.probabilities_one(row, eligible), 20, repeat)
    stats = _warm_state(policy, runs, 20, seed=4)

    def step() -> None:
        nonlocal stats
        arms = policy.select(stats, rng).arms
        rewards = (rng.random(runs) < MEANS[arms]).astype(np.float64)
        stats = policy.update(stats, arms, rewards)

    batched = _best_of(step, steps, repeat) / runs
    return {
        "select_one_us": one * 1e6,
        "select_batch1_us": vector_one * 1e6,
        "probabilities_one_ms": propensities * 1e3,
        "batched_us_per_run_step": batched * 1e6,
    }


def measure_mabwiser(steps: int) -> float | None:
    """Seconds per predict + partial_fit step of MABWiser ThompsonSampling, or None."""
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    arms = list(range(len(MEANS)))
    mab = MAB(arms, LearningPolicy.ThompsonSampling(), seed=5)
    mab.fit([0, 1, 2, 3, 4] * 4, [0, 1, 0, 0, 1] * 4)
    rng = np.random.default_rng(6)

    def step() -> None:
        arm = mab.predict()
        mab.partial_fit([arm], [int(rng.random() < MEANS[int(arm)])])

    return _best_of(step, steps, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.benchmark", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--runs", type=int, default=10_000, help="batch size (runs)")
    parser.add_argument("--steps", type=int, default=20, help="batched steps per timing")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--policy", action="append", choices=POLICY_NAMES, help="repeatable")
    args = parser.parse_args(argv)
    names = args.policy or list(POLICY_NAMES)
    results = {name: measure(name, args.runs, args.steps, args.quick) for name in names}
    mabwiser = measure_mabwiser(200 if args.quick else 1000)
    report: dict[str, object] = {"arms": len(MEANS), "runs": args.runs, "policies": results}
    if mabwiser is not None:
        report["mabwiser_thompson_step_us"] = mabwiser * 1e6
        for name in ("thompson",):
            if name in results:
                results[name]["mabwiser_ratio_live"] = (
                    mabwiser * 1e6 / results[name]["select_one_us"]
                )
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    header = f"{'policy':26} {'select_one µs':>14} {'select () µs':>13} {'props ms':>9} "
    print(header + f"{'batched µs/(run·step)':>22}")
    for name, r in results.items():
        print(
            f"{name:26} {r['select_one_us']:14.2f} {r['select_batch1_us']:13.1f} "
            f"{r['probabilities_one_ms']:9.3f} {r['batched_us_per_run_step']:22.3f}"
        )
    if mabwiser is None:
        print("MABWiser: not installed (pip install 'bandit-router[mabwiser]' to compare)")
    else:
        ratio = (
            mabwiser * 1e6 / results["thompson"]["select_one_us"] if "thompson" in results else 0
        )
        print(
            f"MABWiser ThompsonSampling predict+partial_fit: {mabwiser * 1e6:.1f} µs/step"
            + (f" = {ratio:.0f}x thompson select_one" if ratio else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
