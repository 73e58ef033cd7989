"""Segments: the report per value of a context key, and a warning when one contradicts the whole.

An arm that wins overall can lose in a segment (mobile users, one country) when the segments
differ in size or in how traffic was split between arms; in the extreme every segment
reverses the overall ranking (Simpson's paradox). Each segment gets the same report as the
experiment (``policies.report.build_report``: posterior, interval, P(best), expected loss),
from the rewards of its decisions.

**The warning rule.** Let W be the overall winner of the same decisions (the pooled segments)
when it is best with probability at least ``confidence`` (0.95). A segment with at least
``min_rewards`` rewards on W and on its own best arm S != W is flagged when
P(theta_S > theta_W | segment data) >= 1 - (1 - confidence) / m, m the number of segments
that could be flagged (Bonferroni: with equal arms in every segment, the chance of any false
warning is at most 1 - confidence). The pairwise probability is the two-arm P(best) of the
same quadrature as the report (``policies.base.max_probabilities``).

The posterior treats rewards within a segment as exchangeable; under a contextual policy the
arm chosen depends on other context keys too, so a segment's comparison can be confounded by
them, as any observational comparison can.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from policies.base import Stats, eligible_mask, max_probabilities
from policies.report import (
    MIN_REWARDS_PER_ARM,
    PROB_BEST_THRESHOLD,
    ExperimentReport,
    RewardModel,
    build_report,
)


@dataclass(frozen=True)
class SegmentWarning:
    segment: str
    segment_best: str
    overall_best: str
    probability: float
    threshold: float

    @property
    def message(self) -> str:
        return (
            f"segment {self.segment}: arm {self.segment_best} beats the overall winner "
            f"{self.overall_best} with probability {self.probability:.4f} "
            f"(threshold {self.threshold:.4f}); the overall result hides a losing segment"
        )


def pairwise_probability(stats: Stats, model: RewardModel, better: int, worse: int) -> float:
    """P(theta_better > theta_worse) under the model's posterior."""
    marginals, _ = model.posterior(stats)
    mask = np.zeros(stats.n_arms, dtype=bool)
    mask[[better, worse]] = True
    return float(max_probabilities(marginals, mask)[better])


def segment_reports(
    arm_names: Sequence[str],
    segments: Mapping[str, Stats],
    model: RewardModel,
    *,
    eligible: Sequence[bool] | None = None,
    min_rewards: int = MIN_REWARDS_PER_ARM,
) -> dict[str, ExperimentReport]:
    return {
        value: build_report(arm_names, stats, model, eligible=eligible, min_rewards=min_rewards)
        for value, stats in segments.items()
    }


def pooled(segments: Mapping[str, Stats], n_arms: int) -> Stats:
    zero = np.zeros(n_arms)
    n, total, total_sq = zero.copy(), zero.copy(), zero.copy()
    for stats in segments.values():
        n += stats.n
        total += stats.total
        total_sq += stats.total_sq
    return Stats(n, total, total_sq)


def simpson_warnings(
    arm_names: Sequence[str],
    segments: Mapping[str, Stats],
    model: RewardModel,
    *,
    eligible: Sequence[bool] | None = None,
    confidence: float = PROB_BEST_THRESHOLD,
    min_rewards: int = MIN_REWARDS_PER_ARM,
) -> tuple[ExperimentReport, tuple[SegmentWarning, ...]]:
    """The overall report of the pooled segments and the warnings of the rule above."""
    overall = build_report(
        arm_names,
        pooled(segments, len(arm_names)),
        model,
        eligible=eligible,
        min_rewards=min_rewards,
    )
    names = list(arm_names)
    best = overall.best_arm
    if best is None or overall.arm(best).prob_best < confidence:
        return overall, ()
    w = names.index(best)
    mask = eligible_mask(len(names), None if eligible is None else np.asarray(eligible, bool))
    candidates = []
    for value, stats in segments.items():
        if stats.n[w] < min_rewards:
            continue
        # The segment's best rival of W: its highest P(best) among the other eligible arms.
        marginals, _ = model.posterior(stats)
        prob_best = max_probabilities(marginals, mask)
        rivals = [int(i) for i in np.flatnonzero(mask) if i != w and stats.n[i] >= min_rewards]
        if rivals:
            rival = max(rivals, key=lambda i: float(prob_best[i]))
            candidates.append((value, rival, stats))
    if not candidates:
        return overall, ()
    threshold = 1.0 - (1.0 - confidence) / len(candidates)
    warnings = []
    for value, s, stats in candidates:
        probability = pairwise_probability(stats, model, s, w)
        if probability >= threshold:
            warnings.append(SegmentWarning(value, names[s], best, probability, threshold))
    return overall, tuple(warnings)
