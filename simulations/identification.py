"""How long an experiment with a stopping rule runs, and how often it names the wrong arm.

Many independent Bernoulli experiments advance together: each step every unfinished run
asks the serving policy for one decision (its vectorised ``select``), gets its reward, folds
it in (``update``) and checks the stopping rule, as the service does after every refresh.
A run ends at its first verdict; a run without one by the horizon counts as not stopped.

The same function measures validity (all arms equal: any winner is a false discovery, so
the share of runs that declare one must stay at or below delta) and speed (a real gap: the
share that commit to the better arm within a budget, and the median number of
Route-then-Reward pairs, beside a fixed-horizon test's sample size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from policies.base import FloatArray, IntArray, Policy, Stats
from policies.stopping import StoppingRule, Verdict, fixed_horizon_pairs

#: Steps between two checks of the rule per run. 1: checked after every reward, the most
#: demanding schedule for validity (the service checks less often).
CHECK_EVERY = 1


class Rule(Protocol):
    """What the simulation needs of a stopping rule (tests also pass a deliberately invalid
    one, to show the validity check can fail)."""

    def verdict(self, stats: Stats) -> Verdict: ...


@dataclass(frozen=True)
class IdentificationResult:
    """Per run: the pairs played when the rule first held (horizon + 1 if never) and the
    arm it named (-1 if none)."""

    stopped_at: IntArray
    winner: IntArray
    horizon: int

    @property
    def stopped(self) -> IntArray:
        return np.asarray(self.winner >= 0)

    def declared_share(self) -> float:
        return float(self.stopped.mean())

    def median_pairs(self) -> float:
        return float(np.median(self.stopped_at))

    def share_naming(self, arm: int) -> float:
        return float((self.winner == arm).mean())


def run_identification(
    policy: Policy,
    rule: Rule,
    means: FloatArray | Sequence[float],
    runs: int,
    horizon: int,
    rng: np.random.Generator,
) -> IdentificationResult:
    """``runs`` Bernoulli experiments of at most ``horizon`` pairs under ``policy``."""
    arm_means = np.asarray(means, dtype=np.float64)
    stats = Stats.zeros(arm_means.shape[0], (runs,))
    stopped_at = np.full(runs, horizon + 1, dtype=np.int64)
    winner = np.full(runs, -1, dtype=np.int64)
    live = np.arange(runs)
    for step in range(1, horizon + 1):
        sub = Stats(stats.n[live], stats.total[live], stats.total_sq[live])
        arms = policy.select(sub, rng).arms
        rewards = (rng.random(live.shape[0]) < arm_means[arms]).astype(np.float64)
        sub = policy.update(sub, arms, rewards)
        stats.n[live], stats.total[live], stats.total_sq[live] = sub.n, sub.total, sub.total_sq
        if step % CHECK_EVERY:
            continue
        verdict = rule.verdict(sub)
        done = verdict.winner >= 0
        if done.any():
            stopped_at[live[done]] = step
            winner[live[done]] = verdict.winner[done]
            live = live[~done]
            if live.shape[0] == 0:
                break
    return IdentificationResult(stopped_at=stopped_at, winner=winner, horizon=horizon)


def identification_summary(
    result: IdentificationResult, means: Sequence[float], rule: StoppingRule
) -> dict[str, float | int]:
    """The figures ``bandit-router identify`` prints: declared and correct shares, pairs to
    the verdict, and for two arms the fixed-horizon yardstick at the same error rates
    (level delta, power 1 - delta)."""
    best = int(np.argmax(means))
    summary: dict[str, float | int] = {
        "runs": int(result.stopped_at.shape[0]),
        "horizon": result.horizon,
        "declared_share": result.declared_share(),
        "best_named_share": result.share_naming(best),
        "median_pairs": result.median_pairs(),
        "p95_pairs": float(np.quantile(result.stopped_at, 0.95)),
    }
    if len(means) == 2 and means[0] != means[1]:
        summary["fixed_horizon_pairs"] = fixed_horizon_pairs(
            means[0], means[1], rule.delta, 1.0 - rule.delta
        )
    return summary
