import datetime

from bandit_router.v1 import experiment_pb2 as _experiment_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateExperimentRequest(_message.Message):
    __slots__ = ("experiment", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    reason: str
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class CreateExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetExperimentResponse(_message.Message):
    __slots__ = ("experiment", "statistics")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    statistics: _containers.RepeatedCompositeFieldContainer[ArmStatistics]
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ..., statistics: _Optional[_Iterable[_Union[ArmStatistics, _Mapping]]] = ...) -> None: ...

class ArmStatistics(_message.Message):
    __slots__ = ("arm", "n", "sum", "sum_sq", "decisions")
    ARM_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    SUM_SQ_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    arm: str
    n: float
    sum: float
    sum_sq: float
    decisions: int
    def __init__(self, arm: _Optional[str] = ..., n: _Optional[float] = ..., sum: _Optional[float] = ..., sum_sq: _Optional[float] = ..., decisions: _Optional[int] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments",)
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[_experiment_pb2.Experiment]
    def __init__(self, experiments: _Optional[_Iterable[_Union[_experiment_pb2.Experiment, _Mapping]]] = ...) -> None: ...

class UpdateExperimentRequest(_message.Message):
    __slots__ = ("experiment", "update_mask", "expected_version", "reason", "reset_statistics")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESET_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    update_mask: _field_mask_pb2.FieldMask
    expected_version: int
    reason: str
    reset_statistics: bool
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ..., reset_statistics: _Optional[bool] = ...) -> None: ...

class UpdateExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class DeleteExperimentRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteExperimentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AddArmRequest(_message.Message):
    __slots__ = ("experiment", "arm", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    arm: _experiment_pb2.Arm
    reason: str
    def __init__(self, experiment: _Optional[str] = ..., arm: _Optional[_Union[_experiment_pb2.Arm, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class AddArmResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class RemoveArmRequest(_message.Message):
    __slots__ = ("experiment", "arm", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    arm: str
    reason: str
    def __init__(self, experiment: _Optional[str] = ..., arm: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveArmResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class SetArmStateRequest(_message.Message):
    __slots__ = ("experiment", "arm", "state", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    arm: str
    state: _experiment_pb2.ArmState
    reason: str
    def __init__(self, experiment: _Optional[str] = ..., arm: _Optional[str] = ..., state: _Optional[_Union[_experiment_pb2.ArmState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetArmStateResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class PinArmRequest(_message.Message):
    __slots__ = ("experiment", "arm", "unit_id", "ttl", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    arm: str
    unit_id: str
    ttl: _duration_pb2.Duration
    reason: str
    def __init__(self, experiment: _Optional[str] = ..., arm: _Optional[str] = ..., unit_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class PinArmResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class UnpinRequest(_message.Message):
    __slots__ = ("experiment", "unit_id", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    unit_id: str
    reason: str
    def __init__(self, experiment: _Optional[str] = ..., unit_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnpinResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ("experiment", "arm", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    arm: str
    reason: str
    def __init__(self, experiment: _Optional[str] = ..., arm: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class ResumeRequest(_message.Message):
    __slots__ = ("experiment", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    reason: str
    def __init__(self, experiment: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: _experiment_pb2.Experiment
    def __init__(self, experiment: _Optional[_Union[_experiment_pb2.Experiment, _Mapping]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("experiment", "reason")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    reason: str
    def __init__(self, experiment: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("id", "taken_at", "statistics", "reason", "principal")
    ID_FIELD_NUMBER: _ClassVar[int]
    TAKEN_AT_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    taken_at: _timestamp_pb2.Timestamp
    statistics: _containers.RepeatedCompositeFieldContainer[ArmStatistics]
    reason: str
    principal: str
    def __init__(self, id: _Optional[str] = ..., taken_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., statistics: _Optional[_Iterable[_Union[ArmStatistics, _Mapping]]] = ..., reason: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    def __init__(self, experiment: _Optional[str] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots",)
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("experiment", "window")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    window: _duration_pb2.Duration
    def __init__(self, experiment: _Optional[str] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetReportResponse(_message.Message):
    __slots__ = ("experiment", "arms", "recommendation", "policy", "state_version", "generated_at")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    arms: _containers.RepeatedCompositeFieldContainer[ArmReport]
    recommendation: str
    policy: str
    state_version: int
    generated_at: _timestamp_pb2.Timestamp
    def __init__(self, experiment: _Optional[str] = ..., arms: _Optional[_Iterable[_Union[ArmReport, _Mapping]]] = ..., recommendation: _Optional[str] = ..., policy: _Optional[str] = ..., state_version: _Optional[int] = ..., generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ArmReport(_message.Message):
    __slots__ = ("arm", "state", "decisions", "rewards", "mean", "ci_low", "ci_high", "prob_best", "expected_loss", "recent_share", "drift_detected", "drift_statistic")
    ARM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    PROB_BEST_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LOSS_FIELD_NUMBER: _ClassVar[int]
    RECENT_SHARE_FIELD_NUMBER: _ClassVar[int]
    DRIFT_DETECTED_FIELD_NUMBER: _ClassVar[int]
    DRIFT_STATISTIC_FIELD_NUMBER: _ClassVar[int]
    arm: str
    state: _experiment_pb2.ArmState
    decisions: int
    rewards: float
    mean: float
    ci_low: float
    ci_high: float
    prob_best: float
    expected_loss: float
    recent_share: float
    drift_detected: bool
    drift_statistic: float
    def __init__(self, arm: _Optional[str] = ..., state: _Optional[_Union[_experiment_pb2.ArmState, str]] = ..., decisions: _Optional[int] = ..., rewards: _Optional[float] = ..., mean: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., prob_best: _Optional[float] = ..., expected_loss: _Optional[float] = ..., recent_share: _Optional[float] = ..., drift_detected: _Optional[bool] = ..., drift_statistic: _Optional[float] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("experiment", "limit")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    limit: int
    def __init__(self, experiment: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("id", "time", "principal", "action", "arguments", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: _timestamp_pb2.Timestamp
    principal: str
    action: str
    arguments: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., principal: _Optional[str] = ..., action: _Optional[str] = ..., arguments: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ExportDecisionsRequest(_message.Message):
    __slots__ = ("experiment", "since", "limit")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    since: _timestamp_pb2.Timestamp
    limit: int
    def __init__(self, experiment: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ExportDecisionsResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: DecisionRecord
    def __init__(self, record: _Optional[_Union[DecisionRecord, _Mapping]] = ...) -> None: ...

class DecisionRecord(_message.Message):
    __slots__ = ("decision_id", "experiment", "arm", "propensity", "reason", "time", "unit_id", "context", "state_version", "reward", "default_reward_applied", "probabilities", "probabilities_complete", "features", "attributes")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ProbabilitiesEntry(_message.Message):
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
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REWARD_APPLIED_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    experiment: str
    arm: str
    propensity: float
    reason: _experiment_pb2.Reason
    time: _timestamp_pb2.Timestamp
    unit_id: str
    context: _containers.ScalarMap[str, float]
    state_version: int
    reward: float
    default_reward_applied: bool
    probabilities: _containers.ScalarMap[str, float]
    probabilities_complete: bool
    features: _containers.RepeatedScalarFieldContainer[float]
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, decision_id: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ..., propensity: _Optional[float] = ..., reason: _Optional[_Union[_experiment_pb2.Reason, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unit_id: _Optional[str] = ..., context: _Optional[_Mapping[str, float]] = ..., state_version: _Optional[int] = ..., reward: _Optional[float] = ..., default_reward_applied: _Optional[bool] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., probabilities_complete: _Optional[bool] = ..., features: _Optional[_Iterable[float]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...
