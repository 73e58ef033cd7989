"""Admin.GetReport: per-arm posterior, probability of being best, expected loss, advice.

The maths is ``policies.report`` (pure); this module gathers its inputs (statistics from the
store, recent traffic from the decision log, drift from this replica's monitor) and renders
the answer as protobuf or as a terminal table. The checks over the window's decision log
(sample ratio, novelty, segments, CUPED) are ``log_checks``'s, from the same single scan.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bandit_router.analysis.contextual_report import contextual_section
from bandit_router.analysis.log_checks import CheckOptions, fill_checks, scan_log
from bandit_router.analysis.metric_report import fill_metric_section, render_metric_section
from bandit_router.analysis.stopping import StoppingStatus, stopping_status
from bandit_router.model.convert import timestamp_of
from bandit_router.model.experiments import ArmState, Experiment, check_name
from bandit_router.route.cache import CachedExperiment, ExperimentCache
from bandit_router.store.redis_store import ExperimentState, Store
from bandit_router.v1 import admin_pb2, experiment_pb2
from policies import Stats
from policies.base import max_probabilities
from policies.report import MIN_REWARDS_PER_ARM, build_report, model_for_policy

if TYPE_CHECKING:
    from bandit_router.analysis.drift import DriftMonitor
    from bandit_router.telemetry.metrics import Metrics


_ARM_STATES = {
    ArmState.ACTIVE: experiment_pb2.ARM_STATE_ACTIVE,
    ArmState.DISABLED: experiment_pb2.ARM_STATE_DISABLED,
    ArmState.QUARANTINED: experiment_pb2.ARM_STATE_QUARANTINED,
}


def _stats_of(state: ExperimentState) -> Stats:
    names = state.experiment.arm_names
    return Stats(
        np.array([state.arm_stat(a, "n") for a in names]),
        np.array([state.arm_stat(a, "sum") for a in names]),
        np.array([state.arm_stat(a, "sum_sq") for a in names]),
    )


class ReportBuilder:
    def __init__(
        self,
        store: Store,
        cache: ExperimentCache,
        drift: DriftMonitor | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.drift = drift
        self.metrics = metrics

    async def report(
        self,
        name: str,
        window: float,
        options: CheckOptions | None = None,
        *,
        context: Mapping[str, float] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> admin_pb2.GetReportResponse:
        """GetReport: the recent share and the checks (sample ratio, novelty, and with
        ``options`` segments and CUPED) read the decision log of the last ``window``; a
        contextual experiment adds its coefficients, and P(best) for ``context`` and
        ``attributes`` when given (``contextual_report``)."""
        response, _ = await self.report_with_config(
            name, window, options=options, context=context, attributes=attributes
        )
        return response

    async def report_with_config(
        self,
        name: str,
        window: float,
        recent_shares: Mapping[str, float] | None = None,
        options: CheckOptions | None = None,
        context: Mapping[str, float] | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> tuple[admin_pb2.GetReportResponse, Experiment]:
        """The report and the configuration it was computed from (one read of the store).

        ``recent_shares`` replaces the decision-log scan, and so the checks over it (the
        dashboard samples the shared decision counters instead: reading minutes of a busy log
        on every refresh would cost the event loop far more than the report itself).
        """
        check_name(name, "experiment")
        state = await self.store.read_state(name)
        experiment = state.experiment
        policy = experiment.policy.build()
        options = options or CheckOptions()
        control = options.validate(experiment)
        contextual = contextual_section(state, context or {}, attributes or {})
        model = model_for_policy(policy, experiment.reward_bounds())
        min_rewards = max(MIN_REWARDS_PER_ARM, experiment.burn_in)
        summary = build_report(
            experiment.arm_names,
            _stats_of(state),
            model,
            eligible=[arm.active for arm in experiment.arms],
            min_rewards=min_rewards,
        )
        scan = None
        if recent_shares is None:
            scan = await scan_log(self.store, experiment, window, options)
            recent = scan.recent
            total_recent = sum(recent.values())
            recent_shares = {
                arm: count / total_recent for arm, count in recent.items() if total_recent
            }
        drift = self.drift.status(name) if self.drift is not None else {}
        stopping = stopping_status(experiment, _stats_of(state))
        arms = []
        for index, (arm, row) in enumerate(zip(experiment.arms, summary.arms, strict=True)):
            statistic, detected = drift.get(arm.name, (0.0, False))
            arms.append(
                admin_pb2.ArmReport(
                    arm=arm.name,
                    state=_ARM_STATES[arm.state],
                    decisions=int(state.arm_stat(arm.name, "decisions")),
                    rewards=row.n,
                    mean=row.mean,
                    ci_low=row.ci_low,
                    ci_high=row.ci_high,
                    prob_best=row.prob_best,
                    expected_loss=row.expected_loss,
                    recent_share=recent_shares.get(arm.name, 0.0),
                    drift_detected=detected,
                    drift_statistic=statistic,
                    anytime_low=float(stopping.verdict.lower[index]) if stopping else 0.0,
                    anytime_high=float(stopping.verdict.upper[index]) if stopping else 0.0,
                )
            )
        response = admin_pb2.GetReportResponse(
            experiment=name,
            arms=arms,
            recommendation=summary.recommendation,
            policy=experiment.policy.name,
            state_version=state.state_version,
            generated_at=timestamp_of(time.time()),
        )
        # Sketch and guard windows: read after the stats hash, so they may hold a few
        # rewards more than the counts above (never fewer).
        sketch = await self.store.read_sketch(name) if experiment.metrics else {}
        guard = (await self.store.read_guard([name])).get(name, {}) if experiment.guardrails else {}
        fill_metric_section(
            response, response.arms, experiment, state.stats, sketch, guard, time.time()
        )
        if stopping is not None:
            response.stopping.CopyFrom(stopping_report(experiment, stopping))
        if contextual is not None:
            response.contextual.CopyFrom(contextual)
        if scan is not None:
            fill_checks(
                response,
                scan,
                experiment,
                model,
                options,
                window=window,
                min_rewards=min_rewards,
                control=control,
            )
            if self.metrics is not None and response.sample_ratio.applicable:
                self.metrics.set_sample_ratio(name, response.sample_ratio.p_value)
        return response, experiment


def stopping_report(experiment: Experiment, status: StoppingStatus) -> admin_pb2.StoppingReport:
    report = admin_pb2.StoppingReport(
        winner=status.winner,
        guarantee=status.guarantee(experiment),
        committed_arm=experiment.commit.arm,
        committed_by=experiment.commit.by,
        samples_needed=status.samples_needed,
    )
    if experiment.commit.arm:
        report.committed_at.CopyFrom(timestamp_of(experiment.commit.committed_at))
    return report


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
            for (arm, metric), (count, total) in entry.metric_sums.items():
                # No observation yet: no mean (NaN, a gap in Grafana), not a misleading 0.
                mean = total / count if count > 0 else math.nan
                self.metrics.set_arm_metric(name, arm, metric, count, mean)
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
    has_rule = response.HasField("stopping")
    if has_rule:
        table.add_column("anytime bounds", justify="right")
    for arm in response.arms:
        anytime = [f"[{arm.anytime_low:.4f}, {arm.anytime_high:.4f}]"] if has_rule else []
        table.add_row(
            arm.arm,
            _STATE_WORDS.get(arm.state, "?"),
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
            *anytime,
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(response.recommendation)
    if has_rule:
        console.print(stopping_line(response.stopping))
    render_metric_section(console, response)
    _render_checks(console, response)
    if response.HasField("contextual"):
        _render_contextual(console, response.contextual)


_STATE_WORDS = {
    experiment_pb2.ARM_STATE_ACTIVE: "active",
    experiment_pb2.ARM_STATE_DISABLED: "disabled",
    experiment_pb2.ARM_STATE_QUARANTINED: "quarantined",
}


def stopping_line(report: admin_pb2.StoppingReport) -> str:
    """The stopping rule's verdict in one line, for the terminal."""
    if report.committed_arm:
        return (
            f"committed to {report.committed_arm} by {report.committed_by or 'an operator'}: "
            f"it serves all traffic (bandit-router reopen to undo)"
            + (f"; {report.guarantee}" if report.guarantee else "")
        )
    if report.winner:
        return f"stopping rule holds: {report.guarantee}"
    if report.samples_needed:
        return (
            f"stopping rule: no verdict before every active arm has its minimum "
            f"({report.samples_needed} more rewards on the least-served arm)"
        )
    return "stopping rule: no winner yet (the arms are not separated at this confidence)"


def _render_checks(console: Any, response: admin_pb2.GetReportResponse) -> None:
    """The checks over the window's decision log, below the main table."""
    from rich.table import Table

    srm = response.sample_ratio
    truncated = " (truncated)" if response.log_truncated else ""
    console.print(
        f"log: {response.log_decisions} decisions, {response.log_rewards} rewarded{truncated}; "
        f"sample ratio: {srm.note}"
    )
    for check in response.novelty:
        console.print(
            f"novelty {check.arm}: first {check.first_mean:.4f}, later {check.later_mean:.4f}, "
            f"decay {check.decay:.4f} [{check.ci_low:.4f}, {check.ci_high:.4f}], "
            f"p = {check.p_value:.3g} over {check.units} units"
            + (" DETECTED" if check.detected else "")
        )
    for segment in response.segments:
        table = Table(
            title=f"{response.segment_key} = {segment.value} ({segment.decisions} decisions)"
        )
        for column in ("arm", "decisions", "rewards", "mean", "95% interval", "P(best)"):
            table.add_column(column, justify="left" if column == "arm" else "right")
        for arm in segment.arms:
            table.add_row(
                arm.arm,
                str(arm.decisions),
                f"{arm.rewards:g}",
                f"{arm.mean:.4f}",
                f"[{arm.ci_low:.4f}, {arm.ci_high:.4f}]",
                f"{arm.prob_best:.3f}",
            )
        console.print(table)
        console.print(segment.recommendation)
    if response.HasField("cuped"):
        cuped = response.cuped
        table = Table(
            title=f"CUPED on {cuped.covariate} against {cuped.control} (theta {cuped.theta:.4g}, "
            f"variance reduction {cuped.variance_reduction:.1%}, {cuped.missing} without it)"
        )
        for column in (
            "arm",
            "n",
            "difference",
            "95% interval",
            "adjusted",
            "95% interval",
            "var. red.",
        ):
            table.add_column(column, justify="left" if column == "arm" else "right")
        for c in cuped.comparisons:
            table.add_row(
                c.arm,
                str(c.n),
                f"{c.difference:.4g}",
                f"[{c.ci_low:.4g}, {c.ci_high:.4g}]",
                f"{c.adjusted_difference:.4g}",
                f"[{c.adjusted_ci_low:.4g}, {c.adjusted_ci_high:.4g}]",
                f"{c.variance_reduction:.1%}",
            )
        console.print(table)
    for warning in response.warnings:
        console.print(f"WARNING: {warning}", markup=False)


def _render_contextual(console: Any, section: admin_pb2.ContextualModelReport) -> None:
    """Coefficients per arm (estimate [95 % interval]) and, with a context, P(best)."""
    from rich.table import Table

    table = Table(title="coefficients: theta = P^-1 b [95% posterior interval]")
    table.add_column("column")
    for arm in section.arms:
        table.add_column(arm.arm, justify="right")
    for j, column in enumerate(section.columns):
        table.add_row(
            column,
            *(
                f"{c.estimate:.3f} [{c.ci_low:.3f}, {c.ci_high:.3f}]"
                for c in (arm.coefficients[j] for arm in section.arms)
            ),
        )
    console.print(table)
    if section.scores:
        vector = ", ".join(f"{v:g}" for v in section.features)
        scores = Table(title=f"for x = [{vector}]")
        for column in ("arm", "x.theta [95% CI]", "P(best)"):
            scores.add_column(column, justify="left" if column == "arm" else "right")
        for score in section.scores:
            scores.add_row(
                score.arm,
                f"{score.mean:.3f} [{score.ci_low:.3f}, {score.ci_high:.3f}]",
                f"{score.prob_best:.3f}",
            )
        console.print(scores)
