"""Protobuf <-> domain objects. The only module that knows both; servicers stay thin."""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from bandit_router.errors import InvalidArgument
from bandit_router.model.experiments import (
    DEFAULT_LATE_GRACE,
    DEFAULT_REWARD_WINDOW,
    Arm,
    ArmState,
    Commit,
    ContextFeature,
    Experiment,
    LateRewardRule,
    Pin,
    PolicySpec,
    Stopping,
)
from bandit_router.model.guardrails import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_PROBE_SHARE,
    DEFAULT_WINDOW,
    ArmGuardrail,
    Constraint,
    GuardrailRule,
    Override,
    Statistic,
)
from bandit_router.model.metrics import Direction, MetricKind, MetricSpec, Objective
from bandit_router.v1 import experiment_pb2 as pb

_ARM_STATE_TO_PB = {
    ArmState.ACTIVE: pb.ARM_STATE_ACTIVE,
    ArmState.DISABLED: pb.ARM_STATE_DISABLED,
    ArmState.QUARANTINED: pb.ARM_STATE_QUARANTINED,
}
_OVERRIDE_OF_PB = {
    pb.GUARDRAIL_OVERRIDE_UNSPECIFIED: Override.NONE,
    pb.GUARDRAIL_OVERRIDE_HOLD_ACTIVE: Override.HOLD_ACTIVE,
    pb.GUARDRAIL_OVERRIDE_FORCE_QUARANTINE: Override.FORCE_QUARANTINE,
}
_OVERRIDE_TO_PB = {value: key for key, value in _OVERRIDE_OF_PB.items()}
_STATISTIC_OF_PB = {
    pb.GUARDRAIL_STATISTIC_UNSPECIFIED: Statistic.MEAN,
    pb.GUARDRAIL_STATISTIC_MEAN: Statistic.MEAN,
    pb.GUARDRAIL_STATISTIC_RATE: Statistic.RATE,
    pb.GUARDRAIL_STATISTIC_QUANTILE: Statistic.QUANTILE,
}
_STATISTIC_TO_PB = {
    Statistic.MEAN: pb.GUARDRAIL_STATISTIC_MEAN,
    Statistic.RATE: pb.GUARDRAIL_STATISTIC_RATE,
    Statistic.QUANTILE: pb.GUARDRAIL_STATISTIC_QUANTILE,
}
_LATE_TO_PB = {
    LateRewardRule.IGNORE: pb.LATE_REWARD_RULE_IGNORE,
    LateRewardRule.APPLY: pb.LATE_REWARD_RULE_APPLY,
}


def seconds_of(duration: Duration, field: str, default: float) -> float:
    if duration.seconds < 0 or duration.nanos < 0:
        raise InvalidArgument("must not be negative", field)
    value = duration.seconds + duration.nanos / 1e9
    return value if value > 0 else default


def duration_of(seconds: float) -> Duration:
    whole = math.floor(seconds)
    return Duration(seconds=int(whole), nanos=round((seconds - whole) * 1e9))


def timestamp_of(unix_seconds: float) -> Timestamp:
    whole = math.floor(unix_seconds)
    return Timestamp(seconds=whole, nanos=min(int((unix_seconds - whole) * 1e9), 999_999_999))


def unix_of(timestamp: Timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9


def arm_state_of(value: int, field: str) -> ArmState:
    if value == pb.ARM_STATE_DISABLED:
        return ArmState.DISABLED
    if value in (pb.ARM_STATE_ACTIVE, pb.ARM_STATE_UNSPECIFIED):
        return ArmState.ACTIVE
    if value == pb.ARM_STATE_QUARANTINED:  # the service's to set: merge_update keeps its own
        return ArmState.QUARANTINED
    raise InvalidArgument(f"unknown arm state {value}", field)


def arm_of(message: pb.Arm, field: str) -> Arm:
    override = _OVERRIDE_OF_PB.get(message.guardrail_override)
    if override is None:
        raise InvalidArgument(
            f"unknown override {message.guardrail_override}", f"{field}.guardrail_override"
        )
    status = message.guardrail
    return Arm(
        name=message.name,
        state=arm_state_of(message.state, f"{field}.state"),
        prior_n=message.prior_n,
        prior_sum=message.prior_sum,
        prior_sum_sq=message.prior_sum_sq,
        override=override,
        guardrail=ArmGuardrail(
            since=unix_of(status.since),
            tripped_rules=tuple(status.tripped_rules),
            summary=status.summary,
            epoch=status.epoch,
        ),
    )


def arm_to_pb(arm: Arm) -> pb.Arm:
    message = pb.Arm(
        name=arm.name,
        state=_ARM_STATE_TO_PB[arm.state],
        prior_n=arm.prior_n,
        prior_sum=arm.prior_sum,
        prior_sum_sq=arm.prior_sum_sq,
        guardrail_override=_OVERRIDE_TO_PB[arm.override],
    )
    status = arm.guardrail
    if status != ArmGuardrail():
        message.guardrail.CopyFrom(
            pb.ArmGuardrail(
                tripped_rules=list(status.tripped_rules),
                summary=status.summary,
                epoch=status.epoch,
            )
        )
        if status.since:
            message.guardrail.since.CopyFrom(timestamp_of(status.since))
    return message


def guardrail_of(message: pb.GuardrailRule, field: str) -> GuardrailRule:
    """Unset optional fields take their documented defaults (validated later)."""
    statistic = _STATISTIC_OF_PB.get(message.statistic)
    if statistic is None:
        raise InvalidArgument(f"unknown statistic {message.statistic}", f"{field}.statistic")
    return GuardrailRule(
        metric=message.metric,
        statistic=statistic,
        quantile=message.quantile,
        max=message.max if message.HasField("max") else None,
        min=message.min if message.HasField("min") else None,
        window=seconds_of(message.window, f"{field}.window", DEFAULT_WINDOW),
        min_samples=(
            message.min_samples if message.HasField("min_samples") else DEFAULT_MIN_SAMPLES
        ),
        confidence=message.confidence if message.HasField("confidence") else DEFAULT_CONFIDENCE,
        probe_share=(
            message.probe_share if message.HasField("probe_share") else DEFAULT_PROBE_SHARE
        ),
    )


def guardrail_to_pb(rule: GuardrailRule) -> pb.GuardrailRule:
    message = pb.GuardrailRule(
        metric=rule.metric,
        statistic=_STATISTIC_TO_PB[rule.statistic],
        quantile=rule.quantile,
        window=duration_of(rule.window),
        min_samples=rule.min_samples,
        confidence=rule.confidence,
        probe_share=rule.probe_share,
    )
    if rule.max is not None:
        message.max = rule.max
    if rule.min is not None:
        message.min = rule.min
    return message


def constraint_of(message: pb.Constraint) -> Constraint:
    return Constraint(
        metric=message.metric,
        max_mean=message.max_mean if message.HasField("max_mean") else None,
        min_mean=message.min_mean if message.HasField("min_mean") else None,
        confidence=message.confidence if message.HasField("confidence") else DEFAULT_CONFIDENCE,
    )


def constraint_to_pb(constraint: Constraint) -> pb.Constraint:
    message = pb.Constraint(metric=constraint.metric, confidence=constraint.confidence)
    if constraint.max_mean is not None:
        message.max_mean = constraint.max_mean
    if constraint.min_mean is not None:
        message.min_mean = constraint.min_mean
    return message


def context_feature_of(message: pb.ContextFeature) -> ContextFeature:
    """Domain feature; scale 0 (unset) is 1, the documented default (validated later)."""
    return ContextFeature(
        name=message.name,
        scale=message.scale if message.scale != 0.0 else 1.0,
        values=tuple(message.values),
        required=message.required,
    )


def context_feature_to_pb(feature: ContextFeature) -> pb.ContextFeature:
    return pb.ContextFeature(
        name=feature.name,
        scale=0.0 if feature.values else feature.scale,
        values=list(feature.values),
        required=feature.required,
    )


def metric_of(message: pb.MetricSpec, field: str) -> MetricSpec:
    if message.kind not in (
        pb.METRIC_KIND_UNSPECIFIED,
        pb.METRIC_KIND_BINARY,
        pb.METRIC_KIND_CONTINUOUS,
    ):
        raise InvalidArgument(f"unknown kind {message.kind}", f"{field}.kind")
    if message.direction not in (
        pb.METRIC_DIRECTION_UNSPECIFIED,
        pb.METRIC_DIRECTION_MAXIMIZE,
        pb.METRIC_DIRECTION_MINIMIZE,
    ):
        raise InvalidArgument(f"unknown direction {message.direction}", f"{field}.direction")
    return MetricSpec(
        name=message.name,
        kind=MetricKind.BINARY if message.kind == pb.METRIC_KIND_BINARY else MetricKind.CONTINUOUS,
        min=message.min if message.HasField("min") else None,
        max=message.max if message.HasField("max") else None,
        direction=(
            Direction.MINIMIZE
            if message.direction == pb.METRIC_DIRECTION_MINIMIZE
            else Direction.MAXIMIZE
        ),
    )


def metric_to_pb(metric: MetricSpec) -> pb.MetricSpec:
    message = pb.MetricSpec(
        name=metric.name,
        kind=pb.METRIC_KIND_BINARY
        if metric.kind is MetricKind.BINARY
        else pb.METRIC_KIND_CONTINUOUS,
        direction=pb.METRIC_DIRECTION_MINIMIZE
        if metric.direction is Direction.MINIMIZE
        else pb.METRIC_DIRECTION_MAXIMIZE,
    )
    if metric.min is not None:
        message.min = metric.min
    if metric.max is not None:
        message.max = metric.max
    return message


def experiment_of(message: pb.Experiment) -> Experiment:
    """Domain experiment from its protobuf form (not yet validated)."""
    if message.late_rewards not in (
        pb.LATE_REWARD_RULE_UNSPECIFIED,
        pb.LATE_REWARD_RULE_IGNORE,
        pb.LATE_REWARD_RULE_APPLY,
    ):
        raise InvalidArgument(f"unknown rule {message.late_rewards}", "experiment.late_rewards")
    return Experiment(
        name=message.name,
        arms=tuple(arm_of(arm, f"experiment.arms[{i}]") for i, arm in enumerate(message.arms)),
        policy=PolicySpec(message.policy.name or "thompson", dict(message.policy.params)),
        reward_window=seconds_of(
            message.reward_window, "experiment.reward_window", DEFAULT_REWARD_WINDOW
        ),
        default_reward=message.default_reward if message.HasField("default_reward") else None,
        late_rewards=(
            LateRewardRule.APPLY
            if message.late_rewards == pb.LATE_REWARD_RULE_APPLY
            else LateRewardRule.IGNORE
        ),
        late_reward_grace=seconds_of(
            message.late_reward_grace, "experiment.late_reward_grace", DEFAULT_LATE_GRACE
        ),
        reward_min=message.reward_min if message.HasField("reward_min") else None,
        reward_max=message.reward_max if message.HasField("reward_max") else None,
        description=message.description,
        pin=Pin(
            arm=message.pin.arm,
            reason=message.pin.reason,
            expires_at=unix_of(message.pin.expires_at),
            units=dict(message.pin.units),
        ),
        paused=message.paused,
        pause_arm=message.pause_arm,
        exploration_floor=message.exploration.floor,
        burn_in=message.exploration.burn_in,
        max_share=dict(message.exploration.max_share),
        holdout_share=message.holdout.share,
        holdout_control_arm=message.holdout.control_arm,
        sticky=message.sticky.enabled,
        sticky_ttl=seconds_of(message.sticky.ttl, "experiment.sticky.ttl", 0.0),
        drift_discount=message.drift_discount if message.HasField("drift_discount") else None,
        context_features=tuple(context_feature_of(f) for f in message.context_features),
        stopping=stopping_of(message.stopping) if message.HasField("stopping") else None,
        metrics=tuple(
            metric_of(m, f"experiment.metrics[{i}]") for i, m in enumerate(message.metrics)
        ),
        objective=(
            Objective(dict(message.objective.weights))
            if message.HasField("objective")
            and (message.objective.weights or not message.objective.constraints)
            else None
        ),
        constraints=tuple(constraint_of(c) for c in message.objective.constraints),
        guardrails=tuple(
            guardrail_of(rule, f"experiment.guardrails[{i}]")
            for i, rule in enumerate(message.guardrails)
        ),
        fallback_arm=message.fallback_arm,
        commit=Commit(
            arm=message.commit.arm,
            committed_at=unix_of(message.commit.committed_at),
            by=message.commit.by,
            summary=message.commit.summary,
        ),
    )


def stopping_of(message: pb.StoppingRule) -> Stopping:
    """Unset optional fields take their defaults; an explicit 0 delta stays 0 (and is refused)."""
    default = Stopping()
    return Stopping(
        delta=message.delta if message.HasField("delta") else default.delta,
        epsilon=message.epsilon,
        min_samples=message.min_samples if message.HasField("min_samples") else default.min_samples,
        commit=message.commit,
    )


def experiment_to_pb(experiment: Experiment) -> pb.Experiment:
    message = pb.Experiment(
        name=experiment.name,
        arms=[arm_to_pb(arm) for arm in experiment.arms],
        policy=pb.PolicySpec(name=experiment.policy.name, params=dict(experiment.policy.params)),
        reward_window=duration_of(experiment.reward_window),
        late_rewards=_LATE_TO_PB[experiment.late_rewards],
        late_reward_grace=duration_of(experiment.late_reward_grace),
        version=experiment.version,
        created_at=timestamp_of(experiment.created_at),
        updated_at=timestamp_of(experiment.updated_at),
        pin=pb.Pin(
            arm=experiment.pin.arm,
            reason=experiment.pin.reason,
            units=dict(experiment.pin.units),
        ),
        paused=experiment.paused,
        pause_arm=experiment.pause_arm,
        exploration=pb.ExplorationControls(
            floor=experiment.exploration_floor,
            burn_in=experiment.burn_in,
            max_share=dict(experiment.max_share),
        ),
        holdout=pb.Holdout(
            share=experiment.holdout_share, control_arm=experiment.holdout_control_arm
        ),
        sticky=pb.Sticky(enabled=experiment.sticky, ttl=duration_of(experiment.sticky_ttl)),
        description=experiment.description,
        context_features=[context_feature_to_pb(f) for f in experiment.context_features],
        metrics=[metric_to_pb(m) for m in experiment.metrics],
        guardrails=[guardrail_to_pb(rule) for rule in experiment.guardrails],
        fallback_arm=experiment.fallback_arm,
    )
    if experiment.objective is not None or experiment.constraints:
        weights = {} if experiment.objective is None else dict(experiment.objective.weights)
        message.objective.CopyFrom(
            pb.Objective(
                weights=weights,
                constraints=[constraint_to_pb(c) for c in experiment.constraints],
            )
        )
    if experiment.pin.expires_at:
        message.pin.expires_at.CopyFrom(timestamp_of(experiment.pin.expires_at))
    if experiment.stopping is not None:
        message.stopping.CopyFrom(
            pb.StoppingRule(
                delta=experiment.stopping.delta,
                epsilon=experiment.stopping.epsilon,
                min_samples=experiment.stopping.min_samples,
                commit=experiment.stopping.commit,
            )
        )
    if experiment.commit.arm:
        message.commit.CopyFrom(
            pb.Commit(
                arm=experiment.commit.arm,
                committed_at=timestamp_of(experiment.commit.committed_at),
                by=experiment.commit.by,
                summary=experiment.commit.summary,
            )
        )
    for attr in ("default_reward", "reward_min", "reward_max", "drift_discount"):
        value = getattr(experiment, attr)
        if value is not None:
            setattr(message, attr, value)
    return message


def merge_update(current: Experiment, update: pb.Experiment, mask: FieldMask) -> Experiment:
    """The experiment after applying ``update`` restricted to ``mask`` (all fields if empty)."""
    if not mask.paths:
        merged = pb.Experiment()
        merged.CopyFrom(update)
        merged.name = current.name
        # The commit is the service's state, not configuration: a full replace (re-applying
        # a file) keeps it; only a mask naming "commit" clears it (reopen).
        return keep_guardrail_state(
            current, experiment_of(merged).with_changes(commit=current.commit)
        )
    if not mask.IsValidForDescriptor(cast(Any, pb.Experiment.DESCRIPTOR)):
        raise InvalidArgument(f"unknown field path in {list(mask.paths)}", "update_mask")
    for path in mask.paths:
        if path.split(".")[0] in {"name", "version", "created_at", "updated_at"}:
            raise InvalidArgument(f"{path} cannot be updated", "update_mask")
    for path in mask.paths:
        if path.split(".")[0] == "commit" and update.commit.arm not in ("", current.commit.arm):
            raise InvalidArgument(
                "a commit can only be cleared (reopen); to serve one arm, pin it", "commit.arm"
            )
    target = experiment_to_pb(current)
    mask.MergeMessage(update, target, replace_message_field=True, replace_repeated_field=True)
    return keep_guardrail_state(current, experiment_of(target))


def keep_guardrail_state(current: Experiment, merged: Experiment) -> Experiment:
    """``merged`` with each arm's guardrail state as the service keeps it.

    Quarantine and the guardrail status are the service's state, not configuration: applying
    an experiment file again (which says ``active``) must not release a quarantined arm, and
    a file cannot quarantine one by saying ``quarantined``. An operator moves an arm with
    its override instead: HOLD_ACTIVE releases it, FORCE_QUARANTINE puts it in, either one
    starting a new statistics epoch (and so does clearing one), audited like any update.
    Removing every rule releases every arm and clears the overrides.
    """
    before = {arm.name: arm for arm in current.arms}
    arms = []
    now = time.time()
    # Tripped rules are indexes: follow each to its rule's new place by what it observes
    # (a rule that is gone no longer holds the arm; with no rules left nothing does).
    # (``merged`` is not validated yet: a rule without exactly one bound has no key, and is
    # refused by validation afterwards, INVALID_ARGUMENT naming it.)
    new_index = {
        rule.key: i
        for i, rule in enumerate(merged.guardrails)
        if (rule.max is None) != (rule.min is None)
    }
    moved = {
        i: new_index[rule.key] for i, rule in enumerate(current.guardrails) if rule.key in new_index
    }
    for arm in merged.arms:
        old = before.get(arm.name)
        status = old.guardrail if old is not None else ArmGuardrail()
        if current.guardrails != merged.guardrails:
            tripped = tuple(sorted(moved[i] for i in status.tripped_rules if i in moved))
            status = dataclasses.replace(status, tripped_rules=tripped)
        if not merged.guardrails:
            arm = dataclasses.replace(arm, override=Override.NONE)
        was_quarantined = (
            old is not None and old.state is ArmState.QUARANTINED and bool(merged.guardrails)
        )
        state = arm.state
        if state is not ArmState.DISABLED:
            state = ArmState.QUARANTINED if was_quarantined else ArmState.ACTIVE
            if arm.override is Override.HOLD_ACTIVE:
                state = ArmState.ACTIVE
            elif arm.override is Override.FORCE_QUARANTINE:
                state = ArmState.QUARANTINED
        if old is not None and old.override is not arm.override:
            status = ArmGuardrail(
                since=now,
                tripped_rules=() if state is ArmState.ACTIVE else status.tripped_rules,
                summary=f"override {old.override.value} -> {arm.override.value}",
                epoch=status.epoch + 1,
            )
        elif state is ArmState.ACTIVE and was_quarantined:  # enabled or held: a new epoch
            status = ArmGuardrail(now, (), "released by an operator", status.epoch + 1)
        arms.append(dataclasses.replace(arm, state=state, guardrail=status))
    return merged.with_changes(arms=tuple(arms))
