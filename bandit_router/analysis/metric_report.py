"""The report's metric section: per arm and declared metric a summary with its interval and
quantiles, each arm's guardrail standing and constraint exclusion, the objective's value,
and the Pareto front with the trade-off of every arm against a reference arm.

Inputs are what the store shares (so every replica reports the same numbers): the stats
hash's ``<arm>:m:<metric>:count|total|squares``, the sketch hash's ``<arm>:<metric>:<bucket>``
counts, and the guard hash summed over each rule's window as the guardrail monitor does
(``analysis.guardrails.windows``). The maths is ``policies.metric_report``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit_router.analysis.guardrails import ArmWindows, windows
from bandit_router.model.convert import timestamp_of
from bandit_router.model.experiments import Experiment
from bandit_router.model.guardrails import Override
from bandit_router.model.metrics import Direction, MetricKind, MetricSpec
from bandit_router.model.observations import GAMMA, bucket_value
from bandit_router.route.guard_view import guard_view
from bandit_router.v1 import admin_pb2, experiment_pb2
from policies import metric_report as maths

#: Confidence of the report's metric intervals and dominance verdicts.
CONFIDENCE = 0.95
QUANTILES = (0.5, 0.9, 0.99)

_OVERRIDE = {
    Override.NONE: experiment_pb2.GUARDRAIL_OVERRIDE_UNSPECIFIED,
    Override.HOLD_ACTIVE: experiment_pb2.GUARDRAIL_OVERRIDE_HOLD_ACTIVE,
    Override.FORCE_QUARANTINE: experiment_pb2.GUARDRAIL_OVERRIDE_FORCE_QUARANTINE,
}


def metric_stats(stats: Mapping[str, str], arm: str, metric: str) -> maths.MetricStats:
    """One arm's sufficient statistics of one metric, from the stats hash."""
    prefix = f"{arm}:m:{metric}"
    return maths.MetricStats(
        float(stats.get(f"{prefix}:count", 0.0)),
        float(stats.get(f"{prefix}:total", 0.0)),
        float(stats.get(f"{prefix}:squares", 0.0)),
    )


def sketch_buckets(sketch: Mapping[str, str]) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """The sketch hash as (value, count) pairs per (arm, metric); malformed fields skipped."""
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for field, raw in sketch.items():
        parts = field.split(":")
        if len(parts) != 3:
            continue
        arm, metric, bucket = parts
        try:
            pair = (bucket_value(bucket), float(raw))
        except (ValueError, IndexError):
            continue
        buckets.setdefault((arm, metric), []).append(pair)
    return buckets


def summary_of(
    spec: MetricSpec,
    stats: maths.MetricStats,
    buckets: Sequence[tuple[float, float]],
    confidence: float = CONFIDENCE,
) -> admin_pb2.MetricSummary:
    binary = spec.kind is MetricKind.BINARY
    low, high = maths.mean_interval(stats, binary, confidence, spec.bounds)
    summary = admin_pb2.MetricSummary(
        metric=spec.name,
        kind=spec.kind.value,
        direction=spec.direction.value,
        count=int(stats.count),
        mean=stats.mean if stats.count > 0 else 0.0,
        ci_low=low,
        ci_high=high,
        interval="wilson" if binary else "t",
    )
    if not binary and buckets:
        p50, p90, p99 = maths.sketch_quantiles(buckets, QUANTILES)
        if not math.isnan(p50):
            summary.p50, summary.p90, summary.p99 = p50, p90, p99
    return summary


@dataclass(frozen=True)
class _Arms:
    """Per arm (experiment order), per declared metric: the statistics."""

    specs: tuple[MetricSpec, ...]
    stats: list[list[maths.MetricStats]]


def _guardrail_report(
    experiment: Experiment, index: int, data: ArmWindows | None
) -> admin_pb2.ArmGuardrailReport:
    arm = experiment.arms[index]
    status = experiment_pb2.ArmGuardrail(
        tripped_rules=list(arm.guardrail.tripped_rules),
        summary=arm.guardrail.summary,
        epoch=arm.guardrail.epoch,
    )
    if arm.guardrail.since:
        status.since.CopyFrom(timestamp_of(arm.guardrail.since))
    report = admin_pb2.ArmGuardrailReport(status=status, override=_OVERRIDE[arm.override])
    rules = experiment.guardrails
    if not rules:
        return report
    compiled = experiment.compiled_guardrails
    n = np.array(data.n if data is not None else [0.0] * len(rules), dtype=np.float64)
    s = np.array(data.s if data is not None else [0.0] * len(rules), dtype=np.float64)
    verdicts = compiled.evaluate(n, s)
    tripped = set(arm.guardrail.tripped_rules)
    for r, rule in enumerate(rules):
        verdict = (
            "violated"
            if verdicts.violated[r]
            else "satisfied"
            if verdicts.satisfied[r]
            else "undecided"
        )
        report.rules.append(
            admin_pb2.GuardrailRuleStatus(
                rule=r,
                description=rule.describe(),
                samples=int(n[r]),
                value=compiled.rules[r].value_of(float(n[r]), float(s[r])),
                threshold=rule.threshold,
                verdict=verdict,
                tripped=r in tripped,
            )
        )
    return report


def _objective(
    experiment: Experiment, arms: _Arms, index: int, confidence: float
) -> tuple[float, float, float] | None:
    """sum of weight x mean, with the Bonferroni-combined interval (valid whatever the
    metrics' correlation within a reward); None until every weighted metric has data."""
    objective = experiment.objective
    if objective is None or not objective.weights:
        return None
    specs = {spec.name: i for i, spec in enumerate(arms.specs)}
    share = 1.0 - (1.0 - confidence) / len(objective.weights)
    value = low = high = 0.0
    for name, weight in objective.weights.items():
        m = specs[name]
        stats = arms.stats[index][m]
        if stats.count <= 0:
            return None
        spec = arms.specs[m]
        lo, hi = maths.mean_interval(stats, spec.kind is MetricKind.BINARY, share, spec.bounds)
        value += weight * stats.mean
        low += weight * (lo if weight >= 0 else hi)
        high += weight * (hi if weight >= 0 else lo)
    return value, low, high


def objective_words(experiment: Experiment) -> str:
    """ "quality - 10 cost_usd" """
    objective = experiment.objective
    if objective is None:
        return ""
    words = ""
    for spec in experiment.metrics:  # declaration order: a map's order is not kept
        weight = objective.weights.get(spec.name, 0.0)
        name = spec.name
        if not weight:
            continue
        sign = "-" if weight < 0 else "+"
        size = abs(weight)
        term = name if size == 1.0 else f"{size:g} {name}"
        words = f"{words} {sign} {term}" if words else f"{'-' if weight < 0 else ''}{term}"
    return words


def _significantly_better(
    a: Sequence[maths.MetricStats],
    b: Sequence[maths.MetricStats],
    specs: Sequence[MetricSpec],
    confidence: float,
) -> bool:
    """a is better than b on some metric with the difference's interval excluding 0, at the
    confidence split over the metrics."""
    share = 1.0 - (1.0 - confidence) / len(specs)
    for stats_a, stats_b, spec in zip(a, b, specs, strict=True):
        _, low, high = maths.difference_interval(
            stats_a, stats_b, spec.kind is MetricKind.BINARY, share
        )
        if (spec.direction is Direction.MAXIMIZE and low > 0.0) or (
            spec.direction is Direction.MINIMIZE and high < 0.0
        ):
            return True
    return False


def fill_metric_section(
    response: admin_pb2.GetReportResponse,
    arm_reports: Sequence[admin_pb2.ArmReport],
    experiment: Experiment,
    stats: Mapping[str, str],
    sketch: Mapping[str, str],
    guard: Mapping[str, str],
    now: float,
    confidence: float = CONFIDENCE,
) -> None:
    """Adds the metric section to ``response`` and its ``arm_reports`` (experiment order)."""
    specs = experiment.metrics
    if not (specs or experiment.guardrails or experiment.constraints):
        return
    names = experiment.arm_names
    arms = _Arms(
        tuple(specs), [[metric_stats(stats, arm, spec.name) for spec in specs] for arm in names]
    )
    buckets = sketch_buckets(sketch)
    constrained = guard_view(experiment, stats).constrained if experiment.constraints else {}
    guard_data = windows(experiment, guard, now)[0] if experiment.guardrails else {}
    response.metric_confidence = confidence
    response.objective = objective_words(experiment)
    response.quantile_relative_error = maths.relative_error(GAMMA)
    objectives = [_objective(experiment, arms, i, confidence) for i in range(len(names))]
    for i, report in enumerate(arm_reports):
        for spec, arm_stats in zip(specs, arms.stats[i], strict=True):
            report.metrics.append(
                summary_of(spec, arm_stats, buckets.get((names[i], spec.name), []), confidence)
            )
        if experiment.guardrails:
            report.guardrail.CopyFrom(_guardrail_report(experiment, i, guard_data.get(names[i])))
        report.constraint_exclusion = constrained.get(i, "")
        found = objectives[i]
        if found is not None:
            report.objective, report.objective_ci_low, report.objective_ci_high = found
    if not specs:
        return
    judged = [i for i in range(len(names)) if all(s.count > 0 for s in arms.stats[i])]
    if judged:
        signs = [1.0 if spec.direction is Direction.MAXIMIZE else -1.0 for spec in specs]
        means = np.array([[s.mean for s in arms.stats[i]] for i in judged])
        dominates = maths.dominance(means, signs)
        for column, j in enumerate(judged):
            report = arm_reports[j]
            report.pareto_judged = True
            report.pareto_optimal = not dominates[:, column].any()
            for row, i in enumerate(judged):
                if not dominates[row, column]:
                    continue
                report.dominated_by.append(names[i])
                if _significantly_better(arms.stats[i], arms.stats[j], specs, confidence):
                    report.significantly_dominated_by.append(names[i])
    with_objective = [i for i in range(len(names)) if objectives[i] is not None]
    if with_objective:
        reference = max(with_objective, key=lambda i: objectives[i][0])  # type: ignore[index]
    elif judged:
        reference = judged[0]
    else:
        return
    response.reference_arm = names[reference]
    for i, report in enumerate(arm_reports):
        if i == reference:
            continue
        for spec, own, other in zip(specs, arms.stats[i], arms.stats[reference], strict=True):
            if own.count <= 0 or other.count <= 0:
                continue
            binary = spec.kind is MetricKind.BINARY
            difference, low, high = maths.difference_interval(own, other, binary, confidence)
            sign = 1.0 if spec.direction is Direction.MAXIMIZE else -1.0
            base = abs(other.mean)
            report.differences.append(
                admin_pb2.MetricDifference(
                    metric=spec.name,
                    difference=difference,
                    ci_low=low,
                    ci_high=high,
                    relative=difference / base if base > 0.0 else 0.0,
                    better=sign * difference > 0.0,
                    significant=low > 0.0 or high < 0.0,
                )
            )


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else ("-inf" if value < 0 else "inf")


def _interval(low: float, high: float) -> str:
    return f"[{_number(low)}, {_number(high)}]"


def difference_words(difference: admin_pb2.MetricDifference) -> str:
    """ "cost_usd -0.049 [-0.05, -0.048] (-98%, better*)": * marks a significant one."""
    relative = f"{difference.relative:+.1%}, " if difference.relative else ""
    side = "better" if difference.better else "worse"
    star = "*" if difference.significant else ""
    return (
        f"{difference.metric} {difference.difference:+.4g} "
        f"{_interval(difference.ci_low, difference.ci_high)} ({relative}{side}{star})"
    )


def render_metric_section(console: Any, response: admin_pb2.GetReportResponse) -> None:
    """The metric, trade-off and guardrail tables below the report's main table."""
    from rich.table import Table

    if not response.metric_confidence:
        return
    level = f"{response.metric_confidence:.0%}"
    if any(arm.metrics for arm in response.arms):
        table = Table(
            title=f"metrics ({level} intervals: Wilson for binary, t for continuous; quantiles "
            f"within {response.quantile_relative_error:.1%})"
        )
        for column in ("arm", "metric", "n", "mean", f"{level} interval", "p50", "p90", "p99"):
            table.add_column(column, justify="left" if column in ("arm", "metric") else "right")
        for arm in response.arms:
            for m in arm.metrics:
                quantiles = (
                    [_number(m.p50), _number(m.p90), _number(m.p99)]
                    if m.HasField("p50")
                    else ["", "", ""]
                )
                table.add_row(
                    arm.arm,
                    f"{m.metric} ({m.direction})",
                    str(m.count),
                    _number(m.mean) if m.count else "",
                    _interval(m.ci_low, m.ci_high),
                    *quantiles,
                )
        console.print(table)
        title = "trade-off"
        if response.reference_arm:
            title += f" (differences against {response.reference_arm}; * significant at {level})"
        tradeoff = Table(title=title)
        columns = ["arm"]
        if response.objective:
            columns.append(f"objective {response.objective} [{level}]")
        columns += ["Pareto", "dominated by", "differences"]
        for column in columns:
            tradeoff.add_column(column)
        for arm in response.arms:
            row = [arm.arm]
            if response.objective:
                row.append(
                    f"{arm.objective:.4g} {_interval(arm.objective_ci_low, arm.objective_ci_high)}"
                    if arm.HasField("objective")
                    else ""
                )
            pareto = "front" if arm.pareto_optimal else "dominated" if arm.pareto_judged else ""
            dominated = ", ".join(
                f"{name}*" if name in arm.significantly_dominated_by else name
                for name in arm.dominated_by
            )
            row += [pareto, dominated, "; ".join(difference_words(d) for d in arm.differences)]
            tradeoff.add_row(*row)
        console.print(tradeoff)
    guarded = [arm for arm in response.arms if arm.HasField("guardrail")]
    if any(arm.guardrail.rules for arm in guarded):
        table = Table(title="guardrails (current window; probe data while quarantined)")
        for column in ("arm", "rule", "samples", "value", "verdict", "tripped"):
            table.add_column(column, justify="right" if column in ("samples", "value") else "left")
        for arm in guarded:
            for rule in arm.guardrail.rules:
                table.add_row(
                    arm.arm,
                    rule.description,
                    str(rule.samples),
                    _number(rule.value) if rule.samples else "",
                    rule.verdict,
                    "tripped" if rule.tripped else "",
                )
        console.print(table)
        for arm in guarded:
            if arm.guardrail.status.summary:
                console.print(f"{arm.arm}: {arm.guardrail.status.summary}", markup=False)
    for arm in response.arms:
        if arm.constraint_exclusion:
            console.print(f"{arm.arm} excluded: {arm.constraint_exclusion}", markup=False)
