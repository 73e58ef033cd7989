"""Admin.GetReport: per-arm posterior, probability of being best, expected loss, advice.

The maths is ``policies.report`` (pure); this module gathers its inputs (statistics from the
store, recent traffic from the decision log, drift from this replica's monitor) and renders
the answer as protobuf or as a terminal table.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bandit_router.model.convert import timestamp_of
from bandit_router.model.experiments import check_name
from bandit_router.route.cache import CachedExperiment, ExperimentCache
from bandit_router.route.decision_log import decode
from bandit_router.store.redis_store import ExperimentState, Store
from bandit_router.v1 import admin_pb2, experiment_pb2
from policies import Stats
from policies.base import max_probabilities
from policies.report import MIN_REWARDS_PER_ARM, build_report, model_for_policy

if TYPE_CHECKING:
    from bandit_router.analysis.drift import DriftMonitor

RECENT_LIMIT = 1_000_000
RECENT_CHUNK = 1000


def _stats_of(state: ExperimentState) -> Stats:
    names = state.experiment.arm_names
    return Stats(
        np.array([state.arm_stat(a, "n") for a in names]),
        np.array([state.arm_stat(a, "sum") for a in names]),
        np.array([state.arm_stat(a, "sum_sq") for a in names]),
    )


class ReportBuilder:
    def __init__(
        self, store: Store, cache: ExperimentCache, drift: DriftMonitor | None = None
    ) -> None:
        self.store = store
        self.cache = cache
        self.drift = drift

    async def recent_counts(self, name: str, window: float) -> Counter[str]:
        since_ms = int((time.time() - window) * 1000)
        counts: Counter[str] = Counter()
        start = f"{since_ms}-0"
        while True:
            entries = await self.store.read_decision_log(name, start, RECENT_CHUNK)
            for _, fields in entries:
                if fields.get("type") == "decisions":
                    for decision in decode(fields.get("data", "")):
                        counts[str(decision.get("arm", ""))] += 1
            if len(entries) < RECENT_CHUNK or sum(counts.values()) >= RECENT_LIMIT:
                return counts
            start = "(" + entries[-1][0]

    async def report(self, name: str, window: float) -> admin_pb2.GetReportResponse:
        check_name(name, "experiment")
        state = await self.store.read_state(name)
        experiment = state.experiment
        policy = experiment.policy.build()
        summary = build_report(
            experiment.arm_names,
            _stats_of(state),
            model_for_policy(policy, experiment.reward_bounds()),
            eligible=[arm.active for arm in experiment.arms],
            min_rewards=max(MIN_REWARDS_PER_ARM, experiment.burn_in),
        )
        recent = await self.recent_counts(name, window)
        total_recent = sum(recent.values())
        drift = self.drift.status(name) if self.drift is not None else {}
        arms = []
        for arm, row in zip(experiment.arms, summary.arms, strict=True):
            statistic, detected = drift.get(arm.name, (0.0, False))
            arms.append(
                admin_pb2.ArmReport(
                    arm=arm.name,
                    state=(
                        experiment_pb2.ARM_STATE_ACTIVE
                        if arm.active
                        else experiment_pb2.ARM_STATE_DISABLED
                    ),
                    decisions=int(state.arm_stat(arm.name, "decisions")),
                    rewards=row.n,
                    mean=row.mean,
                    ci_low=row.ci_low,
                    ci_high=row.ci_high,
                    prob_best=row.prob_best,
                    expected_loss=row.expected_loss,
                    recent_share=recent[arm.name] / total_recent if total_recent else 0.0,
                    drift_detected=detected,
                    drift_statistic=statistic,
                )
            )
        return admin_pb2.GetReportResponse(
            experiment=name,
            arms=arms,
            recommendation=summary.recommendation,
            policy=experiment.policy.name,
            state_version=state.state_version,
            generated_at=timestamp_of(time.time()),
        )


def posterior_summary(entry: CachedExperiment) -> dict[str, tuple[float, float]]:
    """(posterior mean, probability of being best) per arm, for the metrics gauges.

    The same model as the report, without its intervals and expected loss: this runs in
    the background of a busy server, so it computes only what the gauges show.
    """
    experiment = entry.experiment
    marginals, means = model_for_policy(entry.policy, entry.reward_bounds).posterior(
        entry.full_stats()
    )
    mask = np.array([arm.active for arm in experiment.arms], dtype=bool)
    prob_best = max_probabilities(marginals, mask) if mask.any() else np.zeros(len(mask))
    return {
        arm: (float(means[i]), float(prob_best[i])) for i, arm in enumerate(experiment.arm_names)
    }


def exploration_share(entry: CachedExperiment) -> float:
    """Expected share of decisions that explore: 1 - P(the greedy arm is chosen)."""
    if not entry.active:
        return 0.0
    probabilities = entry.propensities(entry.active)
    greedy = entry.policy.greedy_values(entry.full_stats())
    best = max(entry.active, key=lambda i: float(greedy[i]))
    floor = entry.experiment.exploration_floor
    chosen = floor + (1.0 - floor * len(entry.active)) * probabilities[best]
    return max(0.0, 1.0 - chosen)


class PosteriorGauges:
    """Keeps the posterior gauges current, off the request path.

    Called periodically by the server; recomputes an experiment only when its configuration
    or statistics changed since the last time (a quadrature per experiment, not per call).
    """

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        self._seen: dict[str, tuple[int, int, str]] = {}

    def update(self, entries: Sequence[CachedExperiment]) -> None:
        for entry in entries:
            name = entry.experiment.name
            key = (entry.experiment.version, entry.state_version, entry.experiment.incarnation)
            if self._seen.get(name) == key:
                continue
            self._seen[name] = key
            for arm, (mean, prob_best) in posterior_summary(entry).items():
                self.metrics.set_arm_posterior(name, arm, mean, prob_best)
            if entry.contextual is None:
                # A contextual policy explores per feature vector; its state alone has no
                # exploration share (the gauges above are the arms' marginal rewards).
                self.metrics.set_exploration_share(name, exploration_share(entry))


def render_report_table(response: admin_pb2.GetReportResponse) -> None:
    """A rich terminal table (plain text when stdout is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{response.experiment} ({response.policy}, state {response.state_version})"
    )
    for column in (
        "arm",
        "state",
        "decisions",
        "rewards",
        "mean",
        "95% interval",
        "P(best)",
        "exp. loss",
        "recent share",
        "drift",
    ):
        table.add_column(column, justify="left" if column in ("arm", "state") else "right")
    for arm in response.arms:
        table.add_row(
            arm.arm,
            "active" if arm.state == experiment_pb2.ARM_STATE_ACTIVE else "disabled",
            str(arm.decisions),
            f"{arm.rewards:g}",
            f"{arm.mean:.4f}",
            f"[{arm.ci_low:.4f}, {arm.ci_high:.4f}]",
            f"{arm.prob_best:.3f}",
            f"{arm.expected_loss:.4g}",
            f"{arm.recent_share:.1%}",
            f"ALARM {arm.drift_statistic:.1f}"
            if arm.drift_detected
            else f"{arm.drift_statistic:.1f}",
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(response.recommendation)
