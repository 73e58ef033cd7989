import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetricKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_KIND_UNSPECIFIED: _ClassVar[MetricKind]
    METRIC_KIND_BINARY: _ClassVar[MetricKind]
    METRIC_KIND_CONTINUOUS: _ClassVar[MetricKind]

class MetricDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_DIRECTION_UNSPECIFIED: _ClassVar[MetricDirection]
    METRIC_DIRECTION_MAXIMIZE: _ClassVar[MetricDirection]
    METRIC_DIRECTION_MINIMIZE: _ClassVar[MetricDirection]

class GuardrailStatistic(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GUARDRAIL_STATISTIC_UNSPECIFIED: _ClassVar[GuardrailStatistic]
    GUARDRAIL_STATISTIC_MEAN: _ClassVar[GuardrailStatistic]
    GUARDRAIL_STATISTIC_RATE: _ClassVar[GuardrailStatistic]
    GUARDRAIL_STATISTIC_QUANTILE: _ClassVar[GuardrailStatistic]

class GuardrailOverride(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GUARDRAIL_OVERRIDE_UNSPECIFIED: _ClassVar[GuardrailOverride]
    GUARDRAIL_OVERRIDE_HOLD_ACTIVE: _ClassVar[GuardrailOverride]
    GUARDRAIL_OVERRIDE_FORCE_QUARANTINE: _ClassVar[GuardrailOverride]

class ArmState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ARM_STATE_UNSPECIFIED: _ClassVar[ArmState]
    ARM_STATE_ACTIVE: _ClassVar[ArmState]
    ARM_STATE_DISABLED: _ClassVar[ArmState]
    ARM_STATE_QUARANTINED: _ClassVar[ArmState]

class LateRewardRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATE_REWARD_RULE_UNSPECIFIED: _ClassVar[LateRewardRule]
    LATE_REWARD_RULE_IGNORE: _ClassVar[LateRewardRule]
    LATE_REWARD_RULE_APPLY: _ClassVar[LateRewardRule]

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_EXPLOIT: _ClassVar[Reason]
    REASON_EXPLORE: _ClassVar[Reason]
    REASON_PINNED: _ClassVar[Reason]
    REASON_HOLDOUT: _ClassVar[Reason]
    REASON_FALLBACK: _ClassVar[Reason]
    REASON_STICKY: _ClassVar[Reason]
    REASON_PAUSED: _ClassVar[Reason]
    REASON_BURN_IN: _ClassVar[Reason]
    REASON_COMMITTED: _ClassVar[Reason]
    REASON_GUARDRAIL: _ClassVar[Reason]
METRIC_KIND_UNSPECIFIED: MetricKind
METRIC_KIND_BINARY: MetricKind
METRIC_KIND_CONTINUOUS: MetricKind
METRIC_DIRECTION_UNSPECIFIED: MetricDirection
METRIC_DIRECTION_MAXIMIZE: MetricDirection
METRIC_DIRECTION_MINIMIZE: MetricDirection
GUARDRAIL_STATISTIC_UNSPECIFIED: GuardrailStatistic
GUARDRAIL_STATISTIC_MEAN: GuardrailStatistic
GUARDRAIL_STATISTIC_RATE: GuardrailStatistic
GUARDRAIL_STATISTIC_QUANTILE: GuardrailStatistic
GUARDRAIL_OVERRIDE_UNSPECIFIED: GuardrailOverride
GUARDRAIL_OVERRIDE_HOLD_ACTIVE: GuardrailOverride
GUARDRAIL_OVERRIDE_FORCE_QUARANTINE: GuardrailOverride
ARM_STATE_UNSPECIFIED: ArmState
ARM_STATE_ACTIVE: ArmState
ARM_STATE_DISABLED: ArmState
ARM_STATE_QUARANTINED: ArmState
LATE_REWARD_RULE_UNSPECIFIED: LateRewardRule
LATE_REWARD_RULE_IGNORE: LateRewardRule
LATE_REWARD_RULE_APPLY: LateRewardRule
REASON_UNSPECIFIED: Reason
REASON_EXPLOIT: Reason
REASON_EXPLORE: Reason
REASON_PINNED: Reason
REASON_HOLDOUT: Reason
REASON_FALLBACK: Reason
REASON_STICKY: Reason
REASON_PAUSED: Reason
REASON_BURN_IN: Reason
REASON_COMMITTED: Reason
REASON_GUARDRAIL: Reason

class Experiment(_message.Message):
    __slots__ = ("name", "arms", "policy", "reward_window", "default_reward", "late_rewards", "late_reward_grace", "reward_min", "reward_max", "version", "created_at", "updated_at", "pin", "paused", "pause_arm", "exploration", "holdout", "sticky", "description", "drift_discount", "context_features", "stopping", "commit", "metrics", "objective", "guardrails", "fallback_arm")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REWARD_WINDOW_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REWARD_FIELD_NUMBER: _ClassVar[int]
    LATE_REWARDS_FIELD_NUMBER: _ClassVar[int]
    LATE_REWARD_GRACE_FIELD_NUMBER: _ClassVar[int]
    REWARD_MIN_FIELD_NUMBER: _ClassVar[int]
    REWARD_MAX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PAUSE_ARM_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    STICKY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DRIFT_DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    STOPPING_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    GUARDRAILS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_ARM_FIELD_NUMBER: _ClassVar[int]
    name: str
    arms: _containers.RepeatedCompositeFieldContainer[Arm]
    policy: PolicySpec
    reward_window: _duration_pb2.Duration
    default_reward: float
    late_rewards: LateRewardRule
    late_reward_grace: _duration_pb2.Duration
    reward_min: float
    reward_max: float
    version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    pin: Pin
    paused: bool
    pause_arm: str
    exploration: ExplorationControls
    holdout: Holdout
    sticky: Sticky
    description: str
    drift_discount: float
    context_features: _containers.RepeatedCompositeFieldContainer[ContextFeature]
    stopping: StoppingRule
    commit: Commit
    metrics: _containers.RepeatedCompositeFieldContainer[MetricSpec]
    objective: Objective
    guardrails: _containers.RepeatedCompositeFieldContainer[GuardrailRule]
    fallback_arm: str
    def __init__(self, name: _Optional[str] = ..., arms: _Optional[_Iterable[_Union[Arm, _Mapping]]] = ..., policy: _Optional[_Union[PolicySpec, _Mapping]] = ..., reward_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., default_reward: _Optional[float] = ..., late_rewards: _Optional[_Union[LateRewardRule, str]] = ..., late_reward_grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reward_min: _Optional[float] = ..., reward_max: _Optional[float] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pin: _Optional[_Union[Pin, _Mapping]] = ..., paused: _Optional[bool] = ..., pause_arm: _Optional[str] = ..., exploration: _Optional[_Union[ExplorationControls, _Mapping]] = ..., holdout: _Optional[_Union[Holdout, _Mapping]] = ..., sticky: _Optional[_Union[Sticky, _Mapping]] = ..., description: _Optional[str] = ..., drift_discount: _Optional[float] = ..., context_features: _Optional[_Iterable[_Union[ContextFeature, _Mapping]]] = ..., stopping: _Optional[_Union[StoppingRule, _Mapping]] = ..., commit: _Optional[_Union[Commit, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[MetricSpec, _Mapping]]] = ..., objective: _Optional[_Union[Objective, _Mapping]] = ..., guardrails: _Optional[_Iterable[_Union[GuardrailRule, _Mapping]]] = ..., fallback_arm: _Optional[str] = ...) -> None: ...

class MetricSpec(_message.Message):
    __slots__ = ("name", "kind", "min", "max", "direction")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: MetricKind
    min: float
    max: float
    direction: MetricDirection
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[MetricKind, str]] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., direction: _Optional[_Union[MetricDirection, str]] = ...) -> None: ...

class Objective(_message.Message):
    __slots__ = ("weights", "constraints")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.ScalarMap[str, float]
    constraints: _containers.RepeatedCompositeFieldContainer[Constraint]
    def __init__(self, weights: _Optional[_Mapping[str, float]] = ..., constraints: _Optional[_Iterable[_Union[Constraint, _Mapping]]] = ...) -> None: ...

class Constraint(_message.Message):
    __slots__ = ("metric", "max_mean", "min_mean", "confidence")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MAX_MEAN_FIELD_NUMBER: _ClassVar[int]
    MIN_MEAN_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    max_mean: float
    min_mean: float
    confidence: float
    def __init__(self, metric: _Optional[str] = ..., max_mean: _Optional[float] = ..., min_mean: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class GuardrailRule(_message.Message):
    __slots__ = ("metric", "statistic", "quantile", "max", "min", "window", "min_samples", "confidence", "probe_share")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBE_SHARE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    statistic: GuardrailStatistic
    quantile: float
    max: float
    min: float
    window: _duration_pb2.Duration
    min_samples: int
    confidence: float
    probe_share: float
    def __init__(self, metric: _Optional[str] = ..., statistic: _Optional[_Union[GuardrailStatistic, str]] = ..., quantile: _Optional[float] = ..., max: _Optional[float] = ..., min: _Optional[float] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_samples: _Optional[int] = ..., confidence: _Optional[float] = ..., probe_share: _Optional[float] = ...) -> None: ...

class ArmGuardrail(_message.Message):
    __slots__ = ("since", "tripped_rules", "summary", "epoch")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TRIPPED_RULES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    tripped_rules: _containers.RepeatedScalarFieldContainer[int]
    summary: str
    epoch: int
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tripped_rules: _Optional[_Iterable[int]] = ..., summary: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class StoppingRule(_message.Message):
    __slots__ = ("delta", "epsilon", "min_samples", "commit")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    delta: float
    epsilon: float
    min_samples: int
    commit: bool
    def __init__(self, delta: _Optional[float] = ..., epsilon: _Optional[float] = ..., min_samples: _Optional[int] = ..., commit: _Optional[bool] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ("arm", "committed_at", "by", "summary")
    ARM_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    arm: str
    committed_at: _timestamp_pb2.Timestamp
    by: str
    summary: str
    def __init__(self, arm: _Optional[str] = ..., committed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., by: _Optional[str] = ..., summary: _Optional[str] = ...) -> None: ...

class ContextFeature(_message.Message):
    __slots__ = ("name", "scale", "values", "required")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    scale: float
    values: _containers.RepeatedScalarFieldContainer[str]
    required: bool
    def __init__(self, name: _Optional[str] = ..., scale: _Optional[float] = ..., values: _Optional[_Iterable[str]] = ..., required: _Optional[bool] = ...) -> None: ...

class Arm(_message.Message):
    __slots__ = ("name", "state", "prior_n", "prior_sum", "prior_sum_sq", "guardrail_override", "guardrail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRIOR_N_FIELD_NUMBER: _ClassVar[int]
    PRIOR_SUM_FIELD_NUMBER: _ClassVar[int]
    PRIOR_SUM_SQ_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: ArmState
    prior_n: float
    prior_sum: float
    prior_sum_sq: float
    guardrail_override: GuardrailOverride
    guardrail: ArmGuardrail
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[ArmState, str]] = ..., prior_n: _Optional[float] = ..., prior_sum: _Optional[float] = ..., prior_sum_sq: _Optional[float] = ..., guardrail_override: _Optional[_Union[GuardrailOverride, str]] = ..., guardrail: _Optional[_Union[ArmGuardrail, _Mapping]] = ...) -> None: ...

class PolicySpec(_message.Message):
    __slots__ = ("name", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Pin(_message.Message):
    __slots__ = ("arm", "reason", "expires_at", "units")
    class UnitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    arm: str
    reason: str
    expires_at: _timestamp_pb2.Timestamp
    units: _containers.ScalarMap[str, str]
    def __init__(self, arm: _Optional[str] = ..., reason: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., units: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExplorationControls(_message.Message):
    __slots__ = ("floor", "burn_in", "max_share")
    class MaxShareEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    BURN_IN_FIELD_NUMBER: _ClassVar[int]
    MAX_SHARE_FIELD_NUMBER: _ClassVar[int]
    floor: float
    burn_in: int
    max_share: _containers.ScalarMap[str, float]
    def __init__(self, floor: _Optional[float] = ..., burn_in: _Optional[int] = ..., max_share: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Holdout(_message.Message):
    __slots__ = ("share", "control_arm")
    SHARE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_ARM_FIELD_NUMBER: _ClassVar[int]
    share: float
    control_arm: str
    def __init__(self, share: _Optional[float] = ..., control_arm: _Optional[str] = ...) -> None: ...

class Sticky(_message.Message):
    __slots__ = ("enabled", "ttl")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    ttl: _duration_pb2.Duration
    def __init__(self, enabled: _Optional[bool] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
