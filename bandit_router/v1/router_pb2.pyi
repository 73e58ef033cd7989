import datetime

from bandit_router.v1 import experiment_pb2 as _experiment_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_OUTCOME_UNSPECIFIED: _ClassVar[RewardOutcome]
    REWARD_OUTCOME_APPLIED: _ClassVar[RewardOutcome]
    REWARD_OUTCOME_DUPLICATE: _ClassVar[RewardOutcome]
    REWARD_OUTCOME_LATE_IGNORED: _ClassVar[RewardOutcome]
    REWARD_OUTCOME_LATE_APPLIED: _ClassVar[RewardOutcome]
    REWARD_OUTCOME_RECORDED: _ClassVar[RewardOutcome]
REWARD_OUTCOME_UNSPECIFIED: RewardOutcome
REWARD_OUTCOME_APPLIED: RewardOutcome
REWARD_OUTCOME_DUPLICATE: RewardOutcome
REWARD_OUTCOME_LATE_IGNORED: RewardOutcome
REWARD_OUTCOME_LATE_APPLIED: RewardOutcome
REWARD_OUTCOME_RECORDED: RewardOutcome

class RouteRequest(_message.Message):
    __slots__ = ("experiment", "unit_id", "excluded_arms", "context", "attributes")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_ARMS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    unit_id: str
    excluded_arms: _containers.RepeatedScalarFieldContainer[str]
    context: _containers.ScalarMap[str, float]
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, experiment: _Optional[str] = ..., unit_id: _Optional[str] = ..., excluded_arms: _Optional[_Iterable[str]] = ..., context: _Optional[_Mapping[str, float]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision_id", "arm", "propensity", "reason", "policy", "state_version", "reward_deadline")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REWARD_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    arm: str
    propensity: float
    reason: _experiment_pb2.Reason
    policy: str
    state_version: int
    reward_deadline: _timestamp_pb2.Timestamp
    def __init__(self, decision_id: _Optional[str] = ..., arm: _Optional[str] = ..., propensity: _Optional[float] = ..., reason: _Optional[_Union[_experiment_pb2.Reason, str]] = ..., policy: _Optional[str] = ..., state_version: _Optional[int] = ..., reward_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("decision_id", "value", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    value: float
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, decision_id: _Optional[str] = ..., value: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: RewardOutcome
    def __init__(self, outcome: _Optional[_Union[RewardOutcome, str]] = ...) -> None: ...
