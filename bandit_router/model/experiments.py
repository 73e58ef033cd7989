"""The experiment as the service understands it: a validated, immutable configuration.

One typed object travels between the gRPC layer (which converts protobuf to it), the store
(which keeps it as JSON beside the statistics) and the router (which decides from it). It is
validated once, here, so everything downstream can trust it; every error names its field in
the spelling of the protobuf message, so a client can find it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from bandit_router.errors import ErrorReason, InvalidArgument
from bandit_router.model.guardrails import (
    ArmGuardrail,
    Constraint,
    GuardrailRule,
    Override,
    compile_guardrails,
    pure_metric,
    validate_guardrails,
)
from bandit_router.model.metrics import MAX_METRICS, MetricKind, MetricSpec, Objective
from policies import (
    ContextualPolicy,
    GaussianThompsonSampling,
    Policy,
    PolicyConfigError,
    ThompsonSampling,
    create_policy,
    is_contextual,
)
from policies import guardrails as pure_guardrails
from policies.base import PRIOR_MAGNITUDE_LIMIT
from policies.stopping import StoppingRule

#: Used with ``fullmatch``: ``$`` in ``re.match`` also matches before a final newline.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ARMS = 256
MAX_DURATION_SECONDS = 90 * 24 * 3600.0
MAX_REASON_LENGTH = 1024
DEFAULT_REWARD_WINDOW = 3600.0
DEFAULT_LATE_GRACE = 24 * 3600.0
#: Columns of a contextual feature vector, the intercept and every one-hot column included.
#: A reward adds d (d + 1) / 2 + d fields to its arm's statistics in one Lua script, and a
#: decision id carries the vector: 64 keeps both small (2,144 fields, ids under 2 kB).
MAX_FEATURES = 64
#: Longest categorical attribute value accepted on Route (the name limit).
MAX_ATTRIBUTE_LENGTH = 64


class ArmState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    #: Broke a guardrail: only probe traffic until it passes again (``analysis.guardrails``).
    QUARANTINED = "quarantined"


class LateRewardRule(StrEnum):
    IGNORE = "ignore"
    APPLY = "apply"


def check_name(value: str, field_name: str) -> str:
    """Names go into Redis keys and decision ids, so they are a closed, safe alphabet."""
    if not value:
        raise InvalidArgument("must not be empty", field_name)
    if len(value) > 64:
        raise InvalidArgument(f"is {len(value)} characters long; at most 64 allowed", field_name)
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidArgument(f"{value!r} has characters outside [A-Za-z0-9_.-]", field_name)
    return value


def check_finite(value: float, field_name: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(f"must be a finite number, got {value!r}", field_name)
    return value


@dataclass(frozen=True)
class Arm:
    name: str
    state: ArmState = ArmState.ACTIVE
    prior_n: float = 0.0
    prior_sum: float = 0.0
    prior_sum_sq: float = 0.0
    #: An operator's hand on the arm's guardrails; the service keeps ``state`` consistent.
    override: Override = Override.NONE
    guardrail: ArmGuardrail = field(default_factory=ArmGuardrail)

    @property
    def active(self) -> bool:
        """Eligible for the bandit's own traffic (a quarantined arm gets only probes)."""
        return self.state is ArmState.ACTIVE

    @property
    def enabled(self) -> bool:
        """Not disabled by an operator: active or quarantined."""
        return self.state is not ArmState.DISABLED

    def to_json_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        data["override"] = self.override.value
        data["guardrail"] = self.guardrail.to_json_dict()
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Arm:
        return cls(
            **{
                **data,
                "state": ArmState(data.get("state", "active")),
                "override": Override(data.get("override", "none")),
                "guardrail": ArmGuardrail.from_json_dict(data.get("guardrail")),
            }
        )


def _policy_error(error: PolicyConfigError) -> InvalidArgument:
    name = error.field
    where = "policy.name" if name in {"name", "policy.name"} else f"policy.params[{name}]"
    return InvalidArgument(error.message, where)


@dataclass(frozen=True)
class PolicySpec:
    name: str = "thompson"
    params: Mapping[str, float] = field(default_factory=dict)

    @property
    def contextual(self) -> bool:
        """True for lin_ts, lin_ucb and logistic_ts: they decide from request features."""
        return is_contextual(self.name)

    @property
    def statistics_kind(self) -> str:
        """What the per-arm statistics mean: 'plain' (n, sum, sum_sq), 'linear' (lin_ts,
        lin_ucb: A = sum x x^T, b = sum r x) or 'logistic' (linearised terms). Policies of
        the same kind can replace each other on a live experiment; others need a reset."""
        if not self.contextual:
            return "plain"
        return "logistic" if self.name == "logistic_ts" else "linear"

    def build(self) -> Policy:
        """The plain policy; raises InvalidArgument naming the bad parameter.

        For a contextual name this is the context-free model of the per-arm (n, sum, sum_sq)
        that contextual experiments keep too (Beta for logistic_ts's 0/1 rewards, Normal
        otherwise, same gamma): reports, gauges and drift read arms' marginal rewards with
        it. Decisions use ``build_contextual``.
        """
        if self.contextual:
            gamma = self.build_contextual().gamma
            if self.name == "logistic_ts":
                return ThompsonSampling(gamma=gamma)
            return GaussianThompsonSampling(gamma=gamma)
        try:
            return create_policy(self.name, dict(self.params))
        except PolicyConfigError as error:
            raise _policy_error(error) from error

    def build_contextual(self) -> ContextualPolicy:
        """The contextual policy; InvalidArgument naming the bad field (also for a plain name)."""
        try:
            return create_policy(self.name, dict(self.params), contextual=True)
        except PolicyConfigError as error:
            raise _policy_error(error) from error


@dataclass(frozen=True)
class ContextFeature:
    """One declared request feature (proto ``ContextFeature``).

    Numeric when ``values`` is empty: ``RouteRequest.context[name] / scale``. Categorical
    otherwise: ``RouteRequest.attributes[name]`` one-hot over ``values`` plus "other".
    """

    name: str
    scale: float = 1.0
    values: tuple[str, ...] = ()
    required: bool = False

    @property
    def categorical(self) -> bool:
        return bool(self.values)

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the feature's columns in the feature vector."""
        if not self.values:
            return (self.name,)
        return (*(f"{self.name}={value}" for value in self.values), f"{self.name}=(other)")

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.values:
            data["values"] = list(self.values)
        elif self.scale != 1.0:
            data["scale"] = self.scale
        if self.required:
            data["required"] = True
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> ContextFeature:
        return cls(
            str(data["name"]),
            float(data.get("scale", 1.0)),
            tuple(str(v) for v in data.get("values", ())),
            bool(data.get("required", False)),
        )


@dataclass(frozen=True)
class Pin:
    arm: str = ""
    reason: str = ""
    expires_at: float = 0.0  # unix seconds; 0 means never
    units: Mapping[str, str] = field(default_factory=dict)

    def active_arm(self, now: float) -> str:
        if self.arm and (self.expires_at == 0.0 or now < self.expires_at):
            return self.arm
        return ""


#: Policies a stopping rule may run with, and the allocation each uses meanwhile: plain
#: Thompson sampling starves the runner-up, so it allocates as top-two while the rule runs.
IDENTIFICATION_ALLOCATION = {"thompson": "top_two_thompson", "top_two_thompson": "top_two_thompson"}
#: The agent named in the audit log and in ``Commit.by`` when the rule commits.
STOPPING_RULE_AGENT = "stopping-rule"


@dataclass(frozen=True)
class Stopping:
    """Best-arm identification (``policies.stopping``): when the rule holds the report names
    the winner, and with ``commit`` the experiment commits to it."""

    delta: float = 0.05
    epsilon: float = 0.0
    min_samples: int = 100
    commit: bool = False


@dataclass(frozen=True)
class Commit:
    """The winner an experiment committed to ('' when it has not), by whom, and why."""

    arm: str = ""
    committed_at: float = 0.0
    by: str = ""
    summary: str = ""


@dataclass(frozen=True)
class Experiment:
    """An experiment's configuration. ``version`` and ``incarnation`` are owned by the store."""

    name: str
    arms: tuple[Arm, ...]
    policy: PolicySpec = field(default_factory=PolicySpec)
    reward_window: float = DEFAULT_REWARD_WINDOW
    default_reward: float | None = None
    late_rewards: LateRewardRule = LateRewardRule.IGNORE
    late_reward_grace: float = DEFAULT_LATE_GRACE
    reward_min: float | None = None
    reward_max: float | None = None
    description: str = ""
    version: int = 0
    incarnation: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    pin: Pin = field(default_factory=Pin)
    paused: bool = False
    pause_arm: str = ""
    exploration_floor: float = 0.0
    burn_in: int = 0
    #: Per-arm traffic caps (``ExplorationControls.max_share``): arm -> share in (0, 1].
    max_share: Mapping[str, float] = field(default_factory=dict)
    holdout_share: float = 0.0
    holdout_control_arm: str = ""
    sticky: bool = False
    sticky_ttl: float = 0.0
    drift_discount: float | None = None
    stopping: Stopping | None = None
    commit: Commit = field(default_factory=Commit)
    context_features: tuple[ContextFeature, ...] = ()
    #: Named metrics a reward may carry (``Experiment.metrics``) and the objective that turns
    #: them into the learning reward (``Experiment.objective``): ``model.metrics``.
    metrics: tuple[MetricSpec, ...] = ()
    objective: Objective | None = None
    #: ``Objective.constraints``: arms that significantly break one are not eligible.
    constraints: tuple[Constraint, ...] = ()
    #: Per-arm SLO rules (``Experiment.guardrails``) and the arm that serves when no arm is
    #: eligible ('' : the first arm): ``model.guardrails``.
    guardrails: tuple[GuardrailRule, ...] = ()
    fallback_arm: str = ""

    # -- derived ---------------------------------------------------------------------------

    @cached_property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(arm.name for arm in self.arms)

    def arm(self, name: str) -> Arm | None:
        for arm in self.arms:
            if arm.name == name:
                return arm
        return None

    @cached_property
    def feature_columns(self) -> tuple[str, ...]:
        """Names of the feature vector's columns: "(intercept)", then each feature's."""
        columns = ["(intercept)"]
        for feature in self.context_features:
            columns += feature.columns
        return tuple(columns)

    @cached_property
    def feature_space(self) -> str:
        """Fingerprint of what a contextual experiment's statistics mean (kind of policy and
        feature columns), kept in the statistics hash (``_space``) and in every contextual
        decision id: a reward whose decision was made in another space is refused by the
        store, atomically, rather than folded into statistics it does not fit. '' for a
        plain policy."""
        if not self.policy.contextual:
            return ""
        spec = [self.policy.statistics_kind, [f.to_json_dict() for f in self.context_features]]
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

    def needs_reset_to_become(self, after: Experiment) -> bool:
        """True when ``after``'s statistics would not mean what this one's do (another kind
        of policy, or other context features under a contextual policy)."""
        if self.policy.statistics_kind != after.policy.statistics_kind:
            return True
        return self.policy.contextual and self.context_features != after.context_features

    def reward_bounds(self) -> tuple[float, float]:
        """Configured bounds, within what the policy's model accepts."""
        low, high = self._policy_bounds()
        return (
            low if self.reward_min is None else self.reward_min,
            high if self.reward_max is None else self.reward_max,
        )

    @cached_property
    def decision_policy(self) -> PolicySpec:
        """The policy Route draws from: the configured one, except that a stopping rule makes
        ``thompson`` allocate as ``top_two_thompson`` (same priors, half the plays to the
        runner-up) until the rule is removed. Learning is unchanged: both are Beta-Bernoulli."""
        if self.stopping is None:
            return self.policy
        allocation = IDENTIFICATION_ALLOCATION.get(self.policy.name, self.policy.name)
        return PolicySpec(allocation, dict(self.policy.params))

    def stopping_rule(self) -> StoppingRule | None:
        """The rule of ``policies.stopping`` for this experiment, over its reward range."""
        if self.stopping is None:
            return None
        low, high = self.reward_bounds()
        return StoppingRule(
            delta=self.stopping.delta,
            epsilon=self.stopping.epsilon,
            min_samples=self.stopping.min_samples,
            reward_min=low,
            reward_max=high,
        )

    def with_changes(self, **changes: Any) -> Experiment:
        return dataclasses.replace(self, **changes)

    # -- validation ------------------------------------------------------------------------

    def validated(self) -> Experiment:
        """Return self after checking every field; InvalidArgument names the first bad one."""
        check_name(self.name, "experiment.name")
        if not self.arms:
            raise InvalidArgument("at least one arm is required", "experiment.arms")
        if len(self.arms) > MAX_ARMS:
            raise InvalidArgument(f"at most {MAX_ARMS} arms allowed", "experiment.arms")
        seen: set[str] = set()
        for index, arm in enumerate(self.arms):
            where = f"experiment.arms[{index}]"
            check_name(arm.name, f"{where}.name")
            if arm.name in seen:
                raise InvalidArgument(
                    f"duplicate arm name {arm.name!r}",
                    f"{where}.name",
                    reason=ErrorReason.DUPLICATE_ARM,
                )
            seen.add(arm.name)
            for attr in ("prior_n", "prior_sum", "prior_sum_sq"):
                value = check_finite(getattr(arm, attr), f"{where}.{attr}")
                if abs(value) > PRIOR_MAGNITUDE_LIMIT:
                    raise InvalidArgument(
                        f"{value!r} is larger in magnitude than {PRIOR_MAGNITUDE_LIMIT:g}",
                        f"{where}.{attr}",
                    )
            if arm.prior_n < 0:
                raise InvalidArgument("must be >= 0", f"{where}.prior_n")
        if not any(arm.enabled for arm in self.arms) and not self.paused:
            raise InvalidArgument("at least one arm must be active", "experiment.arms")
        self.policy.build()
        self._validate_context_features()
        self._check_duration(self.reward_window, "experiment.reward_window", allow_zero=False)
        self._check_duration(
            self.late_reward_grace, "experiment.late_reward_grace", allow_zero=True
        )
        low, high = self._policy_bounds()
        for attr in ("reward_min", "reward_max"):
            value = getattr(self, attr)
            if value is None:
                continue
            check_finite(value, f"experiment.{attr}")
            if not low <= value <= high:
                raise InvalidArgument(
                    f"{value!r} is outside the rewards policy {self.policy.name!r} accepts "
                    f"[{low:g}, {high:g}]",
                    f"experiment.{attr}",
                )
        bound_low, bound_high = self.reward_bounds()
        if bound_low > bound_high:
            raise InvalidArgument("must not exceed reward_max", "experiment.reward_min")
        if self.default_reward is not None:
            check_finite(self.default_reward, "experiment.default_reward")
            if not bound_low <= self.default_reward <= bound_high:
                raise InvalidArgument(
                    f"{self.default_reward!r} is outside the reward range "
                    f"[{bound_low:g}, {bound_high:g}]",
                    "experiment.default_reward",
                )
        if len(self.description) > 4096:
            raise InvalidArgument("at most 4096 characters", "experiment.description")
        self._validate_controls(seen)
        self._validate_stopping(seen)
        self._validate_metrics()
        self._validate_guardrails(seen)
        return self

    def _validate_guardrails(self, arm_names: set[str]) -> None:
        for index, constraint in enumerate(self.constraints):
            constraint.validate(f"experiment.objective.constraints[{index}]", self.metric_specs)
        validate_guardrails(self.guardrails, self.metric_specs, len(self.arms))
        if self.fallback_arm and self.fallback_arm not in arm_names:
            raise InvalidArgument(f"unknown arm {self.fallback_arm!r}", "experiment.fallback_arm")
        for index, arm in enumerate(self.arms):
            if arm.override is Override.NONE:
                continue
            where = f"experiment.arms[{index}].guardrail_override"
            if not self.guardrails:
                raise InvalidArgument("the experiment has no guardrails", where)
            if arm.state is ArmState.DISABLED:
                raise InvalidArgument(f"arm {arm.name!r} is disabled", where)

    @cached_property
    def compiled_guardrails(self) -> pure_guardrails.Guardrails:
        """The rules as ``policies.guardrails`` tests them (validated experiments only)."""
        return compile_guardrails(self.guardrails, self.metric_specs, len(self.arms))

    @cached_property
    def compiled_constraints(self) -> tuple[pure_guardrails.Guardrail, ...]:
        """Each constraint as a mean rule of ``policies.guardrails`` (same reduction, same
        test)."""
        return tuple(
            pure_guardrails.compile_rule(
                c.as_rule().pure(), pure_metric(self.metric_specs[c.metric])
            )
            for c in self.constraints
        )

    @property
    def fallback_index(self) -> int:
        """Index of the arm that serves when no arm is eligible."""
        return self.arm_names.index(self.fallback_arm) if self.fallback_arm else 0

    def _validate_metrics(self) -> None:
        where = "experiment.metrics"
        if len(self.metrics) > MAX_METRICS:
            raise InvalidArgument(f"at most {MAX_METRICS} metrics", where)
        names: set[str] = set()
        for index, metric in enumerate(self.metrics):
            at = f"{where}[{index}]"
            check_name(metric.name, f"{at}.name")
            if metric.name in names:
                raise InvalidArgument(f"duplicate metric name {metric.name!r}", f"{at}.name")
            names.add(metric.name)
            for attr in ("min", "max"):
                bound = getattr(metric, attr)
                if bound is None:
                    continue
                check_finite(bound, f"{at}.{attr}")
                if metric.kind is MetricKind.BINARY:
                    raise InvalidArgument("a binary metric is 0 or 1: no bounds", f"{at}.{attr}")
            if metric.min is not None and metric.max is not None and metric.min > metric.max:
                raise InvalidArgument("must not exceed max", f"{at}.min")
        objective = self.objective
        if objective is None:
            return
        if not objective.weights:
            raise InvalidArgument("at least one weight", "experiment.objective.weights")
        for name, weight in objective.weights.items():
            at = f"experiment.objective.weights[{name}]"
            if name not in names:
                raise InvalidArgument(f"undeclared metric {name!r}; declare it in metrics", at)
            check_finite(weight, at)
        low, high = objective.range(self.metric_specs)
        policy_low, policy_high = self._policy_bounds()
        if not (policy_low <= low and high <= policy_high):
            suggestion = "lin_ts" if self.policy.contextual else "gaussian_thompson"
            unbounded = [
                n for n in objective.weights if not math.isfinite(sum(self.metric_specs[n].bounds))
            ]
            hint = f" (and declare min and max of {', '.join(unbounded)})" if unbounded else ""
            raise InvalidArgument(
                f"policy {self.policy.name!r} learns rewards in [{policy_low:g}, "
                f"{policy_high:g}] but the objective ranges over [{low:g}, {high:g}]: use "
                f"{suggestion}{hint}",
                "experiment.policy.name",
            )
        bound_low, bound_high = self.reward_bounds()
        if not (bound_low <= low and high <= bound_high):
            raise InvalidArgument(
                f"the objective ranges over [{low:g}, {high:g}], outside reward_min/reward_max "
                f"[{bound_low:g}, {bound_high:g}]",
                "experiment.objective",
            )

    def _validate_stopping(self, arm_names: set[str]) -> None:
        if self.commit.arm and self.commit.arm not in arm_names:
            raise InvalidArgument(f"unknown arm {self.commit.arm!r}", "experiment.commit.arm")
        if self.stopping is None:
            if self.commit.arm:
                raise InvalidArgument("a commit needs a stopping rule", "experiment.commit")
            return
        for attr in ("delta", "epsilon"):
            check_finite(getattr(self.stopping, attr), f"experiment.stopping.{attr}")
        if self.policy.name not in IDENTIFICATION_ALLOCATION:
            raise InvalidArgument(
                f"a stopping rule needs an allocation that identifies the best arm; policy "
                f"{self.policy.name!r} has none: use thompson (allocated as top_two_thompson "
                f"while the rule runs) or top_two_thompson",
                "experiment.stopping",
            )
        if self.policy.params.get("gamma", 1.0) != 1.0 or self.drift_discount is not None:
            raise InvalidArgument(
                "the stopping rule's guarantee assumes arms whose means do not change; it "
                "cannot be combined with a discounted policy (gamma) or drift_discount",
                "experiment.stopping",
            )
        try:
            self.stopping_rule()
        except PolicyConfigError as error:
            raise InvalidArgument(error.message, f"experiment.{error.field}") from error

    def _policy_bounds(self) -> tuple[float, float]:
        if self.policy.contextual:
            return self.policy.build_contextual().reward_bounds
        return self.policy.build().reward_bounds

    def _validate_context_features(self) -> None:
        where = "experiment.context_features"
        if self.policy.contextual and not self.context_features:
            raise InvalidArgument(
                f"policy {self.policy.name!r} decides from request features: declare at least "
                "one context feature",
                where,
            )
        names: set[str] = set()
        for index, feature in enumerate(self.context_features):
            at = f"{where}[{index}]"
            check_name(feature.name, f"{at}.name")
            if feature.name in names:
                raise InvalidArgument(f"duplicate feature name {feature.name!r}", f"{at}.name")
            names.add(feature.name)
            check_finite(feature.scale, f"{at}.scale")
            if not feature.scale > 0.0:
                raise InvalidArgument("must be > 0", f"{at}.scale")
            if feature.values and feature.scale != 1.0:
                raise InvalidArgument("a categorical feature (values) has no scale", f"{at}.scale")
            if len(set(feature.values)) != len(feature.values):
                raise InvalidArgument("duplicate value", f"{at}.values")
            for position, value in enumerate(feature.values):
                check_name(value, f"{at}.values[{position}]")
        if len(self.feature_columns) > MAX_FEATURES:
            raise InvalidArgument(
                f"{len(self.feature_columns)} columns (the intercept, one per numeric feature, "
                f"values + 1 per categorical one); at most {MAX_FEATURES}",
                where,
            )

    @staticmethod
    def _check_duration(value: float, where: str, *, allow_zero: bool) -> None:
        check_finite(value, where)
        if value < 0 or (value == 0 and not allow_zero):
            raise InvalidArgument(f"must be {'>= 0' if allow_zero else '> 0'}", where)
        if value > MAX_DURATION_SECONDS:
            raise InvalidArgument(f"at most {MAX_DURATION_SECONDS:g} seconds (90 days)", where)

    def _validate_controls(self, arm_names: set[str]) -> None:
        if self.pin.arm and self.pin.arm not in arm_names:
            raise InvalidArgument(f"unknown arm {self.pin.arm!r}", "experiment.pin.arm")
        for unit, arm in self.pin.units.items():
            if arm not in arm_names:
                raise InvalidArgument(f"unknown arm {arm!r}", f"experiment.pin.units[{unit}]")
        if self.pause_arm and self.pause_arm not in arm_names:
            raise InvalidArgument(f"unknown arm {self.pause_arm!r}", "experiment.pause_arm")
        check_finite(self.exploration_floor, "experiment.exploration.floor")
        active = sum(1 for arm in self.arms if arm.enabled)
        if not 0.0 <= self.exploration_floor <= 1.0 / max(active, 1):
            raise InvalidArgument(
                f"{self.exploration_floor!r} is outside [0, 1/K] with K={active} active arms",
                "experiment.exploration.floor",
            )
        if self.burn_in < 0:
            raise InvalidArgument("must be >= 0", "experiment.exploration.burn_in")
        self._validate_caps(arm_names)
        check_finite(self.holdout_share, "experiment.holdout.share")
        if not 0.0 <= self.holdout_share <= 1.0:
            raise InvalidArgument("must be in [0, 1]", "experiment.holdout.share")
        if self.holdout_control_arm and self.holdout_control_arm not in arm_names:
            raise InvalidArgument(
                f"unknown arm {self.holdout_control_arm!r}", "experiment.holdout.control_arm"
            )
        self._check_duration(self.sticky_ttl, "experiment.sticky.ttl", allow_zero=True)
        if self.drift_discount is not None:
            check_finite(self.drift_discount, "experiment.drift_discount")
            if not 0.0 < self.drift_discount < 1.0:
                raise InvalidArgument("must be in (0, 1)", "experiment.drift_discount")

    def _validate_caps(self, arm_names: set[str]) -> None:
        """Each cap names a known arm and is a share in (0, 1], at least the floor (a cap
        under the floor would break the floor's promise). Caps covering every active arm must
        leave room for all the traffic: no law could respect caps summing below 1."""
        where = "experiment.exploration.max_share"
        for arm, share in self.max_share.items():
            at = f"{where}[{arm}]"
            if arm not in arm_names:
                raise InvalidArgument(f"unknown arm {arm!r}", at)
            check_finite(share, at)
            if not 0.0 < share <= 1.0:
                raise InvalidArgument(f"{share!r} is outside (0, 1]", at)
            if share < self.exploration_floor:
                raise InvalidArgument(
                    f"{share!r} is below the exploration floor {self.exploration_floor!r}", at
                )
        active = [arm.name for arm in self.arms if arm.enabled]
        if active and all(arm in self.max_share for arm in active):
            total = sum(self.max_share[arm] for arm in active)
            if total < 1.0 - 1e-12:
                raise InvalidArgument(
                    f"the caps of the active arms ({', '.join(active)}) sum to {total:g} < 1: "
                    "leave at least one active arm uncapped or raise the caps",
                    where,
                )

    @cached_property
    def metric_specs(self) -> dict[str, MetricSpec]:
        """Declared metrics by name."""
        return {metric.name: metric for metric in self.metrics}

    @cached_property
    def cap_of(self) -> dict[int, float]:
        """``max_share`` keyed by arm index (what the router's law computation reads)."""
        index = {name: i for i, name in enumerate(self.arm_names)}
        return {index[arm]: share for arm, share in self.max_share.items() if arm in index}

    # -- JSON (the store keeps this form) --------------------------------------------------

    def to_json_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["arms"] = [arm.to_json_dict() for arm in self.arms]
        data["policy"] = {"name": self.policy.name, "params": dict(self.policy.params)}
        data["late_rewards"] = self.late_rewards.value
        data["pin"] = {**dataclasses.asdict(self.pin), "units": dict(self.pin.units)}
        data["stopping"] = None if self.stopping is None else dataclasses.asdict(self.stopping)
        data["commit"] = dataclasses.asdict(self.commit)
        data["context_features"] = [f.to_json_dict() for f in self.context_features]
        data["max_share"] = dict(self.max_share)
        data["metrics"] = [metric.to_json_dict() for metric in self.metrics]
        data["objective"] = None if self.objective is None else self.objective.to_json_dict()
        data["constraints"] = [c.to_json_dict() for c in self.constraints]
        data["guardrails"] = [rule.to_json_dict() for rule in self.guardrails]
        return data

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Experiment:
        values = dict(data)
        values["arms"] = tuple(Arm.from_json_dict(arm) for arm in data["arms"])
        policy = data.get("policy", {})
        values["policy"] = PolicySpec(
            policy.get("name", "thompson"), dict(policy.get("params", {}))
        )
        values["late_rewards"] = LateRewardRule(data.get("late_rewards", "ignore"))
        pin = data.get("pin") or {}
        values["pin"] = Pin(**{**pin, "units": dict(pin.get("units", {}))})
        stopping = data.get("stopping")
        values["stopping"] = None if stopping is None else Stopping(**stopping)
        values["commit"] = Commit(**(data.get("commit") or {}))
        values["context_features"] = tuple(
            ContextFeature.from_json_dict(f) for f in data.get("context_features", ())
        )
        values["max_share"] = {
            str(arm): float(share) for arm, share in (data.get("max_share") or {}).items()
        }
        values["metrics"] = tuple(MetricSpec.from_json_dict(m) for m in data.get("metrics", ()))
        objective = data.get("objective")
        values["objective"] = None if objective is None else Objective.from_json_dict(objective)
        values["constraints"] = tuple(
            Constraint.from_json_dict(c) for c in data.get("constraints", ())
        )
        values["guardrails"] = tuple(
            GuardrailRule.from_json_dict(rule) for rule in data.get("guardrails", ())
        )
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})
