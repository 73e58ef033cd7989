"""Cost of one decision, live and batched, per policy: ``python -m policies.benchmark``.

On a 5-arm Bernoulli problem, per policy:

* live, one decision for one cached state: the scalar ``select_one`` (what the service runs
  when a request excludes arms), a ``PredrawnDecisions`` block (what it runs otherwise;
  amortised over its refills) and the vectorised ``select`` on batch shape ();
* batched, per (run, step) over 10,000 runs: ``select`` + ``update`` (what
  ``simulations.runner`` runs) and ``select`` + ``update_inplace`` (a caller that owns its
  statistics arrays).

Contextual policies (``lin_ts``, ``lin_ucb``, ``logistic_ts``) are timed on d = 16 features
(an intercept and 15 N(0, 1/15) values) and 5 arms with logistic rewards, per policy:

* live: one decision for one feature vector (a list of floats, as the service parses it) with
  a ``PreparedModel`` (``select_one``), its propensities (``probabilities_one``: a quadrature
  per request for the Thompson policies), one reward's ``increments``, and ``prepare``, the
  per-state refresh the service runs in the background;
* the live decision as a contextual Route takes it (``route.cache.ContextualState`` and
  ``route.router``): for a feature vector new to the state, as continuous features are on
  almost every request, the law and the means (``law_one``: the propensity Route answers
  and the probabilities the decision log records) and then the draw from that law
  (``pick_from_law``), over 4,096 distinct vectors in turn (the issue's target: <= 30 µs).
  ``decision`` takes it in the state after 200 decisions, where all 5 arms contend for
  every vector; ``learned`` in a learned state (``_learned_contextual``: 20,000 logged
  decisions per arm, two good arms and three poor ones), where one arm contends for about
  a quarter of these vectors, two for 70-73% and three or more for 2-3%;
* batched: ``select`` + ``update_inplace`` per (run, step) over ``--contextual-runs`` runs.

Large draws use ``policies.sampling``'s threads (``--threads``; results do not depend on
it). If MABWiser is installed, the same run times its ThompsonSampling predict + partial_fit
step for a ratio. Timings are machine-dependent and never asserted in tests; on a shared
machine run it several times and keep the best.
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
from policies.contextual import (
    ContextualPolicy,
    ContextualStats,
    PreparedModel,
    pick_from_law,
)
from policies.logistic_ts import laplace_statistics
from policies.predrawn import PredrawnDecisions
from policies.registry import CONTEXTUAL_POLICY_NAMES, POLICY_NAMES, create_policy
from policies.sampling import draw_threads, set_draw_threads

MEANS = np.array([0.05, 0.04, 0.06, 0.03, 0.05])
#: The contextual problem: d features (intercept first) and this many arms.
CONTEXT_DIM = 16
CONTEXT_ARMS = 5


def _best_of(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Seconds per call: the best of ``repeat`` batches (least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _best_of_each(fns: list[Callable[[], object]], number: int, repeat: int) -> list[float]:
    """``_best_of`` for several functions, interleaved so that load bursts hit all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best[i] = min(best[i], (time.perf_counter() - start) / number)
    return best


def _warm_state(policy: Policy, runs: int, steps: int, seed: int) -> Stats:
    """Statistics after ``steps`` decisions, so timings see a realistic (not empty) state."""
    rng = np.random.default_rng(seed)
    stats = Stats.zeros(len(MEANS), (runs,))
    for _ in range(steps):
        arms = policy.select(stats, rng).arms
        stats = policy.update(stats, arms, (rng.random(runs) < MEANS[arms]).astype(np.float64))
    return stats


def measure(
    name: str, runs: int, steps: int, quick: bool, warm_steps: int = 20
) -> dict[str, float]:
    policy = create_policy(name, {})
    live = _warm_state(policy, 1, 200, seed=1)
    single = Stats(live.n[0], live.total[0], live.total_sq[0])
    row, py_rng, rng = single.row(), random.Random(2), np.random.default_rng(3)
    eligible = list(range(len(MEANS)))
    predrawn = PredrawnDecisions(policy, single, eligible)
    repeat = 3 if quick else 7
    one, block = _best_of_each(
        [lambda: policy.select_one(row, py_rng, eligible), lambda: predrawn.draw(py_rng)],
        20 * predrawn.block_size,
        repeat,
    )
    vector_one = _best_of(lambda: policy.select(single, rng), 500, repeat)
    propensities = _best_of(lambda: policy.probabilities_one(row, eligible), 20, repeat)
    warm = _warm_state(policy, runs, warm_steps, seed=4)
    # Both loops start from the same state and seed and stay in step: update and
    # update_inplace give identical statistics, so they time the same decisions.
    pure = Stats(warm.n.copy(), warm.total.copy(), warm.total_sq.copy())
    owned = Stats(warm.n.copy(), warm.total.copy(), warm.total_sq.copy())
    pure_rng, owned_rng = np.random.default_rng(5), np.random.default_rng(5)

    def step() -> None:
        nonlocal pure
        arms = policy.select(pure, pure_rng).arms
        rewards = (pure_rng.random(runs) < MEANS[arms]).astype(np.float64)
        pure = policy.update(pure, arms, rewards)

    def step_inplace() -> None:
        arms = policy.select(owned, owned_rng).arms
        rewards = (owned_rng.random(runs) < MEANS[arms]).astype(np.float64)
        policy.update_inplace(owned, arms, rewards)

    batched, inplace = _best_of_each([step, step_inplace], steps, repeat)
    return {
        "select_one_us": one * 1e6,
        "predrawn_us": block * 1e6,
        "select_batch1_us": vector_one * 1e6,
        "probabilities_one_ms": propensities * 1e3,
        "batched_us_per_run_step": batched / runs * 1e6,
        "batched_inplace_us_per_run_step": inplace / runs * 1e6,
    }


def _contexts(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Feature vectors of the contextual problem: an intercept and N(0, 1/15) values."""
    scale = 1.0 / np.sqrt(CONTEXT_DIM - 1)
    return np.column_stack([np.ones(rows), rng.normal(0.0, scale, (rows, CONTEXT_DIM - 1))])


def _contextual_rewards(
    rng: np.random.Generator, weights: np.ndarray, x: np.ndarray, arms: np.ndarray
) -> np.ndarray:
    """Bernoulli rewards with log-odds x.w_arm (valid for every contextual policy)."""
    log_odds = (weights[arms] * x).sum(axis=-1)
    wins = rng.random(len(arms)) < 1.0 / (1.0 + np.exp(-log_odds))
    return np.asarray(wins, dtype=np.float64)


def _warm_contextual(
    policy: ContextualPolicy, runs: int, steps: int, seed: int
) -> tuple[ContextualStats, np.ndarray]:
    """Statistics of ``runs`` runs after ``steps`` decisions, and the arms' true weights."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.5, (CONTEXT_ARMS, CONTEXT_DIM))
    stats = ContextualStats.zeros(CONTEXT_ARMS, CONTEXT_DIM, (runs,))
    for _ in range(steps):
        x = _contexts(rng, runs)
        arms = policy.select(stats, x, rng).arms
        policy.update_inplace(stats, arms, x, _contextual_rewards(rng, weights, x, arms))
    return stats, weights


def _learned_contextual(policy: ContextualPolicy, seed: int) -> ContextualStats:
    """A learned state: 20,000 logged decisions per arm (features as ``_contexts``) on a
    problem with two good arms and three poor ones (log-odds intercepts -3, -2.5, -2, 0 and
    0, the other weights N(0, 0.5^2)), refitted exactly on all of them: the sums x x^T and
    r x for the linear policies, the batch Laplace posterior for ``logistic_ts``."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.5, (CONTEXT_ARMS, CONTEXT_DIM))
    weights[:, 0] = [-3.0, -2.5, -2.0, 0.0, 0.0]
    count = 20_000
    stats = ContextualStats.zeros(CONTEXT_ARMS, CONTEXT_DIM)
    for k in range(CONTEXT_ARMS):
        x = _contexts(rng, count)
        r = _contextual_rewards(rng, weights, x, np.full(count, k))
        if policy.linearised:
            stats.gram[k], stats.b[k], _ = laplace_statistics(x, r, policy.lam)
        else:
            stats.gram[k], stats.b[k] = x.T @ x, x.T @ r
        stats.n[k] = count
    return stats


def measure_contextual(name: str, runs: int, steps: int, quick: bool) -> dict[str, float]:
    """Live and batched costs of one contextual policy (see the module docstring)."""
    policy = create_policy(name, {}, contextual=True)
    live, _ = _warm_contextual(policy, 1, 200, seed=1)
    single = ContextualStats(live.n[0], live.gram[0], live.b[0])
    model = policy.prepare(single)
    features = _contexts(np.random.default_rng(2), 1)[0].tolist()
    py_rng, eligible = random.Random(3), list(range(CONTEXT_ARMS))
    repeat = 3 if quick else 7
    one, increment = _best_of_each(
        [
            lambda: policy.select_one(model, features, py_rng, eligible),
            lambda: policy.increments(model, 1, features, 1.0),
        ],
        2000,
        repeat,
    )
    propensities = _best_of(lambda: policy.probabilities_one(model, features, eligible), 20, repeat)
    fresh = [row.tolist() for row in _contexts(np.random.default_rng(6), 4096)]
    turn = iter(range(1 << 62))

    learned = policy.prepare(_learned_contextual(policy, seed=7))

    def decision(model: PreparedModel = model) -> None:
        x = fresh[next(turn) % len(fresh)]
        law, means = policy.law_one(model, x, eligible)
        arm = pick_from_law(law, eligible, py_rng.random())
        any(means[i] > means[arm] for i in eligible)  # explored

    decide, decide_learned = _best_of_each([decision, lambda: decision(learned)], 200, repeat)
    prepare = _best_of(lambda: policy.prepare(single), 50, repeat)
    warm, weights = _warm_contextual(policy, runs, 20, seed=4)
    rng = np.random.default_rng(5)

    def step() -> None:
        x = _contexts(rng, runs)
        arms = policy.select(warm, x, rng).arms
        policy.update_inplace(warm, arms, x, _contextual_rewards(rng, weights, x, arms))

    batched = _best_of(step, steps, repeat)
    return {
        "select_one_us": one * 1e6,
        "probabilities_one_ms": propensities * 1e3,
        "decision_us": decide * 1e6,
        "decision_learned_us": decide_learned * 1e6,
        "increments_us": increment * 1e6,
        "prepare_ms": prepare * 1e3,
        "batched_inplace_us_per_run_step": batched / runs * 1e6,
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
    parser.add_argument(
        "--warm-steps",
        type=int,
        default=20,
        help="steps played before the batched timings: the cost depends on the state (early "
        "on most Bernoulli arms have no success yet, and Thompson draws those in closed form)",
    )
    parser.add_argument(
        "--contextual-runs", type=int, default=1_000, help="batch size of the contextual policies"
    )
    parser.add_argument(
        "--policy",
        action="append",
        choices=(*POLICY_NAMES, *CONTEXTUAL_POLICY_NAMES),
        help="repeatable (default: all)",
    )
    parser.add_argument(
        "--threads", type=int, help="threads for large draws (default: usable cores, max 8)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        set_draw_threads(args.threads)
    chosen = args.policy or [*POLICY_NAMES, *CONTEXTUAL_POLICY_NAMES]
    names = [name for name in chosen if name in POLICY_NAMES]
    results = {
        name: measure(name, args.runs, args.steps, args.quick, args.warm_steps) for name in names
    }
    contextual = {
        name: measure_contextual(name, args.contextual_runs, args.steps, args.quick)
        for name in chosen
        if name in CONTEXTUAL_POLICY_NAMES
    }
    mabwiser = measure_mabwiser(200 if args.quick else 1000)
    report: dict[str, object] = {
        "arms": len(MEANS),
        "runs": args.runs,
        "warm_steps": args.warm_steps,
        "draw_threads": draw_threads(),
        "policies": results,
        "contextual": {
            "dim": CONTEXT_DIM,
            "arms": CONTEXT_ARMS,
            "runs": args.contextual_runs,
            "policies": contextual,
        },
    }
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
    if results:
        print(f"live: µs per decision; batched: µs per (run, step), {args.runs} runs", end="")
        print(f" after {args.warm_steps} steps", end="")
        print(f", draw threads {draw_threads()}")
        header = (
            f"{'policy':24} {'select_one':>10} {'predrawn':>9} {'select ()':>9} {'props ms':>9}"
        )
        print(header + f" {'select+update':>14} {'…+update_inplace':>17}")
        for name, r in results.items():
            print(
                f"{name:24} {r['select_one_us']:10.2f} {r['predrawn_us']:9.3f} "
                f"{r['select_batch1_us']:9.1f} {r['probabilities_one_ms']:9.3f} "
                f"{r['batched_us_per_run_step']:14.3f} {r['batched_inplace_us_per_run_step']:17.3f}"
            )
    if contextual:
        print(
            f"contextual, d = {CONTEXT_DIM}, {CONTEXT_ARMS} arms: live µs/ms per call; "
            f"batched: µs per (run, step), {args.contextual_runs} runs"
        )
        print(
            f"{'policy':24} {'select_one':>10} {'props ms':>9} {'decision':>9} {'learned':>8} "
            f"{'increments':>10} "
            f"{'prepare ms':>10} {'select+update_inplace':>21}"
        )
        for name, r in contextual.items():
            print(
                f"{name:24} {r['select_one_us']:10.2f} {r['probabilities_one_ms']:9.3f} "
                f"{r['decision_us']:9.1f} {r['decision_learned_us']:8.1f} "
                f"{r['increments_us']:10.2f} {r['prepare_ms']:10.3f} "
                f"{r['batched_inplace_us_per_run_step']:21.3f}"
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
