"""Per-arm guardrails and objective constraints: what an experiment file declares.

A guardrail is an SLO on one arm (``error`` rate at most 0.05, p99 ``latency_ms`` at most
500): an arm that breaks it significantly is quarantined on every replica and keeps only a
probe share of the traffic until its probe data pass the rule again (``analysis.guardrails``
runs the state machine, ``policies.guardrails`` the test). A constraint is a bound on an
arm's mean of a metric (``cost_usd`` mean at most 0.01): an arm that breaks it significantly
is not eligible at all.

Both are tested on bounded observations (a rate, an exceedance indicator, or a bounded
metric's mean), because only there is the sequential test exact from the sufficient
statistics the store keeps; a mean rule on an unbounded metric is refused with a pointer to
the quantile rule, which needs no bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bandit_router.errors import InvalidArgument
from bandit_router.model.metrics import MetricKind, MetricSpec
from policies import guardrails as pure_guardrails
from policies.base import PolicyConfigError

#: Rules one experiment may declare: each adds two fields per arm and window slot.
MAX_GUARDRAILS = 16
DEFAULT_WINDOW = 600.0
DEFAULT_MIN_SAMPLES = 50
DEFAULT_CONFIDENCE = 0.95
DEFAULT_PROBE_SHARE = 0.01
#: A larger probe share is no longer a probe: the arm would still carry real traffic.
MAX_PROBE_SHARE = 0.5
#: The agent named in the audit log for transitions the rules make.
GUARDRAIL_AGENT = "guardrail"


class Statistic(StrEnum):
    MEAN = "mean"
    RATE = "rate"
    QUANTILE = "quantile"


class Override(StrEnum):
    """An operator's hand on an arm (proto ``GuardrailOverride``)."""

    NONE = "none"
    HOLD_ACTIVE = "hold_active"
    FORCE_QUARANTINE = "force_quarantine"


def _check_confidence(confidence: float, where: str) -> None:
    if not (math.isfinite(confidence) and 0.0 < confidence < 1.0):
        raise InvalidArgument(f"{confidence!r} is outside (0, 1)", where)


def _declared(metrics: Mapping[str, MetricSpec], name: str, where: str) -> MetricSpec:
    spec = metrics.get(name)
    if spec is None:
        known = ", ".join(sorted(metrics)) or "none"
        raise InvalidArgument(f"undeclared metric {name!r} (declared: {known})", f"{where}.metric")
    return spec


def _bounded(spec: MetricSpec, what: str, where: str) -> tuple[float, float]:
    low, high = spec.bounds
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InvalidArgument(
            f"{what} needs a bounded metric: declare {spec.name!r} with min and max (or use "
            "statistic: quantile, which needs no bounds)",
            where,
        )
    return low, high


@dataclass(frozen=True)
class GuardrailRule:
    """One rule (proto ``GuardrailRule``); exactly one of ``max`` and ``min`` is set."""

    metric: str
    statistic: Statistic = Statistic.MEAN
    quantile: float = 0.0
    max: float | None = None
    min: float | None = None
    window: float = DEFAULT_WINDOW
    min_samples: int = DEFAULT_MIN_SAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    probe_share: float = DEFAULT_PROBE_SHARE

    @property
    def threshold(self) -> float:
        bound = self.max if self.max is not None else self.min
        assert bound is not None  # validated
        return bound

    @property
    def is_max(self) -> bool:
        return self.max is not None

    @property
    def key(self) -> str:
        """What the rule observes, as the store's field names carry it: two rules that differ
        only in window, samples, confidence or probe share share their statistics (and a
        change of those keeps the data)."""
        op = "le" if self.is_max else "ge"  # no '=' or ',': the store's argument syntax
        q = f"q{self.quantile!r}" if self.statistic is Statistic.QUANTILE else self.statistic.value
        return f"{self.metric}.{q}.{op}{self.threshold!r}"

    def describe(self) -> str:
        """ "error rate <= 0.05", "latency_ms p99 <= 500" (reports, audit, alerts)."""
        op = "<=" if self.is_max else ">="
        if self.statistic is Statistic.QUANTILE:
            what = f"p{self.quantile * 100:g}"
        else:
            what = self.statistic.value
        return f"{self.metric} {what} {op} {self.threshold:g}"

    def pure(self) -> pure_guardrails.GuardrailRule:
        """The rule as ``policies.guardrails`` reduces and tests it."""
        return pure_guardrails.GuardrailRule(
            metric=self.metric,
            statistic=self.statistic.value,
            bound="max" if self.is_max else "min",
            threshold=self.threshold,
            quantile=self.quantile if self.statistic is Statistic.QUANTILE else None,
            window=self.window,
            min_samples=self.min_samples,
            confidence=self.confidence,
            probe_share=self.probe_share,
        )

    def validate(self, where: str, metrics: Mapping[str, MetricSpec]) -> None:
        spec = _declared(metrics, self.metric, where)
        if (self.max is None) == (self.min is None):
            raise InvalidArgument("set exactly one of max and min", where)
        bound_at = f"{where}.{'max' if self.is_max else 'min'}"
        if not math.isfinite(self.threshold):
            raise InvalidArgument(f"must be a finite number, got {self.threshold!r}", bound_at)
        if self.statistic is Statistic.RATE and spec.kind is not MetricKind.BINARY:
            raise InvalidArgument(
                f"a rate needs a binary metric; {self.metric!r} is continuous (use mean or "
                "quantile)",
                f"{where}.statistic",
            )
        if self.statistic is Statistic.QUANTILE:
            if not (math.isfinite(self.quantile) and 0.0 < self.quantile < 1.0):
                raise InvalidArgument(f"{self.quantile!r} is outside (0, 1)", f"{where}.quantile")
        elif self.quantile:
            raise InvalidArgument("only for statistic: quantile", f"{where}.quantile")
        if self.statistic is not Statistic.QUANTILE:
            _bounded(spec, "a mean or rate rule", f"{where}.statistic")
        if not (math.isfinite(self.window) and self.window >= 1.0):
            raise InvalidArgument(f"must be at least 1s, got {self.window!r}s", f"{where}.window")
        if self.min_samples < 1:
            raise InvalidArgument(f"must be >= 1, got {self.min_samples}", f"{where}.min_samples")
        _check_confidence(self.confidence, f"{where}.confidence")
        if not (math.isfinite(self.probe_share) and 0.0 < self.probe_share <= MAX_PROBE_SHARE):
            raise InvalidArgument(
                f"{self.probe_share!r} is outside (0, {MAX_PROBE_SHARE:g}]", f"{where}.probe_share"
            )
        try:  # what remains: the threshold must leave room within the metric's bounds
            pure_guardrails.compile_rule(self.pure(), pure_metric(spec), where)
        except PolicyConfigError as error:
            raise InvalidArgument(error.message, error.field) from error

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"metric": self.metric, "statistic": self.statistic.value}
        if self.statistic is Statistic.QUANTILE:
            data["quantile"] = self.quantile
        if self.max is not None:
            data["max"] = self.max
        if self.min is not None:
            data["min"] = self.min
        data.update(
            window=self.window,
            min_samples=self.min_samples,
            confidence=self.confidence,
            probe_share=self.probe_share,
        )
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> GuardrailRule:
        return cls(
            metric=str(data["metric"]),
            statistic=Statistic(data.get("statistic", "mean")),
            quantile=float(data.get("quantile", 0.0)),
            max=None if data.get("max") is None else float(data["max"]),
            min=None if data.get("min") is None else float(data["min"]),
            window=float(data.get("window", DEFAULT_WINDOW)),
            min_samples=int(data.get("min_samples", DEFAULT_MIN_SAMPLES)),
            confidence=float(data.get("confidence", DEFAULT_CONFIDENCE)),
            probe_share=float(data.get("probe_share", DEFAULT_PROBE_SHARE)),
        )


@dataclass(frozen=True)
class Constraint:
    """An objective constraint (proto ``Constraint``): exactly one of the bounds."""

    metric: str
    max_mean: float | None = None
    min_mean: float | None = None
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def bound(self) -> float:
        bound = self.max_mean if self.max_mean is not None else self.min_mean
        assert bound is not None  # validated
        return bound

    def describe(self) -> str:
        op = "<=" if self.max_mean is not None else ">="
        return f"mean {self.metric} {op} {self.bound:g}"

    def as_rule(self) -> GuardrailRule:
        """The same test as a mean guardrail: one implementation of the statistics."""
        return GuardrailRule(
            self.metric,
            Statistic.MEAN,
            max=self.max_mean,
            min=self.min_mean,
            min_samples=1,
            confidence=self.confidence,
        )

    def validate(self, where: str, metrics: Mapping[str, MetricSpec]) -> None:
        spec = _declared(metrics, self.metric, where)
        if (self.max_mean is None) == (self.min_mean is None):
            raise InvalidArgument("set exactly one of max_mean and min_mean", where)
        bound_at = f"{where}.{'max_mean' if self.max_mean is not None else 'min_mean'}"
        if not math.isfinite(self.bound):
            raise InvalidArgument(f"must be a finite number, got {self.bound!r}", bound_at)
        _check_confidence(self.confidence, f"{where}.confidence")
        low, high = _bounded(spec, "a constraint", f"{where}.metric")
        if not low < self.bound < high:
            raise InvalidArgument(
                f"{self.bound:g} leaves no room: every arm would always or never meet it for "
                f"values in [{low:g}, {high:g}]",
                bound_at,
            )

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"metric": self.metric, "confidence": self.confidence}
        if self.max_mean is not None:
            data["max_mean"] = self.max_mean
        if self.min_mean is not None:
            data["min_mean"] = self.min_mean
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Constraint:
        return cls(
            str(data["metric"]),
            None if data.get("max_mean") is None else float(data["max_mean"]),
            None if data.get("min_mean") is None else float(data["min_mean"]),
            float(data.get("confidence", DEFAULT_CONFIDENCE)),
        )


@dataclass(frozen=True)
class ArmGuardrail:
    """An arm's guardrail status (proto ``ArmGuardrail``), owned by the service.

    ``epoch`` numbers the arm's statistics epochs: every transition starts a new one, so the
    rules of a quarantined arm read only its probe data, and those of a recovered arm only
    what came after its recovery (a half-open circuit breaker with its own window)."""

    since: float = 0.0
    tripped_rules: tuple[int, ...] = ()
    summary: str = ""
    epoch: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "tripped_rules": list(self.tripped_rules),
            "summary": self.summary,
            "epoch": self.epoch,
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any] | None) -> ArmGuardrail:
        data = data or {}
        return cls(
            float(data.get("since", 0.0)),
            tuple(int(i) for i in data.get("tripped_rules", ())),
            str(data.get("summary", "")),
            int(data.get("epoch", 0)),
        )


def pure_metric(spec: MetricSpec) -> pure_guardrails.MetricSpec:
    """A declared metric as ``policies.guardrails`` sees it: its kind and bounds."""
    low, high = spec.bounds
    if spec.kind is MetricKind.BINARY:
        return pure_guardrails.MetricSpec(spec.name, "binary", low, high)
    return pure_guardrails.MetricSpec(spec.name, "continuous", low, high)


def compile_guardrails(
    rules: Sequence[GuardrailRule], metrics: Mapping[str, MetricSpec], n_arms: int
) -> pure_guardrails.Guardrails:
    """Validated rules, compiled: the reductions and tests the service and simulations share,
    each rule's level shared among the first slots of its sliding window."""
    widths = slot_widths(rules)
    return pure_guardrails.compile_guardrails(
        [rule.pure() for rule in rules],
        {name: pure_metric(spec) for name, spec in metrics.items()},
        n_arms,
        slot=[widths[rule.key] for rule in rules],
    )


def validate_guardrails(
    rules: Sequence[GuardrailRule], metrics: Mapping[str, MetricSpec], n_arms: int
) -> None:
    """Each rule on its own, then together: even with every arm quarantined the probes must
    leave traffic for the fallback arm."""
    if len(rules) > MAX_GUARDRAILS:
        raise InvalidArgument(f"at most {MAX_GUARDRAILS} rules", "experiment.guardrails")
    for i, rule in enumerate(rules):
        rule.validate(f"experiment.guardrails[{i}]", metrics)
    if rules:
        largest = max(rule.probe_share for rule in rules)
        if largest * n_arms >= 1.0:
            raise InvalidArgument(
                f"with all {n_arms} arms quarantined, probes of {largest:g} each would take "
                "all the traffic: lower probe_share",
                "experiment.guardrails",
            )


def slot_widths(rules: Sequence[GuardrailRule]) -> dict[str, int]:
    """Width in seconds of the store's window slots, per rule key (``GuardrailRule.key``):
    a tenth of the shortest window among the rules that share the key, at least 1 s
    (``policies.guardrails.slot_width``). So a rule's window is read as about 11 slots
    whatever its length, and its level is shared among about 11 first slots; rules that
    share a key share its fields, hence its slots."""
    windows: dict[str, list[float]] = {}
    for rule in rules:
        windows.setdefault(rule.key, []).append(rule.window)
    return {key: pure_guardrails.slot_width(values) for key, values in windows.items()}
