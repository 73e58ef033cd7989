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
    __slots__ = ("arm", "n", "sum", "sum_sq", "decisions", "gram", "b")
    ARM_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    SUM_SQ_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    GRAM_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    arm: str
    n: float
    sum: float
    sum_sq: float
    decisions: int
    gram: _containers.RepeatedScalarFieldContainer[float]
    b: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, arm: _Optional[str] = ..., n: _Optional[float] = ..., sum: _Optional[float] = ..., sum_sq: _Optional[float] = ..., decisions: _Optional[int] = ..., gram: _Optional[_Iterable[float]] = ..., b: _Optional[_Iterable[float]] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments", "next_page_token")
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[_experiment_pb2.Experiment]
    next_page_token: str
    def __init__(self, experiments: _Optional[_Iterable[_Union[_experiment_pb2.Experiment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("experiment", "page_size", "page_token")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    page_size: int
    page_token: str
    def __init__(self, experiment: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots", "next_page_token")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    next_page_token: str
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("experiment", "window", "by", "covariate", "control", "first_exposures", "context", "attributes")
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
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    COVARIATE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    FIRST_EXPOSURES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    window: _duration_pb2.Duration
    by: str
    covariate: str
    control: str
    first_exposures: int
    context: _containers.ScalarMap[str, float]
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, experiment: _Optional[str] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., by: _Optional[str] = ..., covariate: _Optional[str] = ..., control: _Optional[str] = ..., first_exposures: _Optional[int] = ..., context: _Optional[_Mapping[str, float]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetReportResponse(_message.Message):
    __slots__ = ("experiment", "arms", "recommendation", "policy", "state_version", "generated_at", "log_decisions", "log_rewards", "log_truncated", "sample_ratio", "novelty", "segment_key", "segments", "cuped", "warnings", "stopping", "contextual", "metric_confidence", "reference_arm", "objective", "quantile_relative_error")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATED_AT_FIELD_NUMBER: _ClassVar[int]
    LOG_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    LOG_REWARDS_FIELD_NUMBER: _ClassVar[int]
    LOG_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATIO_FIELD_NUMBER: _ClassVar[int]
    NOVELTY_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CUPED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    STOPPING_FIELD_NUMBER: _ClassVar[int]
    CONTEXTUAL_FIELD_NUMBER: _ClassVar[int]
    METRIC_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ARM_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_RELATIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    arms: _containers.RepeatedCompositeFieldContainer[ArmReport]
    recommendation: str
    policy: str
    state_version: int
    generated_at: _timestamp_pb2.Timestamp
    log_decisions: int
    log_rewards: int
    log_truncated: bool
    sample_ratio: SampleRatioCheck
    novelty: _containers.RepeatedCompositeFieldContainer[NoveltyCheck]
    segment_key: str
    segments: _containers.RepeatedCompositeFieldContainer[SegmentReport]
    cuped: CupedReport
    warnings: _containers.RepeatedScalarFieldContainer[str]
    stopping: StoppingReport
    contextual: ContextualModelReport
    metric_confidence: float
    reference_arm: str
    objective: str
    quantile_relative_error: float
    def __init__(self, experiment: _Optional[str] = ..., arms: _Optional[_Iterable[_Union[ArmReport, _Mapping]]] = ..., recommendation: _Optional[str] = ..., policy: _Optional[str] = ..., state_version: _Optional[int] = ..., generated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., log_decisions: _Optional[int] = ..., log_rewards: _Optional[int] = ..., log_truncated: _Optional[bool] = ..., sample_ratio: _Optional[_Union[SampleRatioCheck, _Mapping]] = ..., novelty: _Optional[_Iterable[_Union[NoveltyCheck, _Mapping]]] = ..., segment_key: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[SegmentReport, _Mapping]]] = ..., cuped: _Optional[_Union[CupedReport, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., stopping: _Optional[_Union[StoppingReport, _Mapping]] = ..., contextual: _Optional[_Union[ContextualModelReport, _Mapping]] = ..., metric_confidence: _Optional[float] = ..., reference_arm: _Optional[str] = ..., objective: _Optional[str] = ..., quantile_relative_error: _Optional[float] = ...) -> None: ...

class ContextualModelReport(_message.Message):
    __slots__ = ("columns", "arms", "features", "scores")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    arms: _containers.RepeatedCompositeFieldContainer[ArmCoefficients]
    features: _containers.RepeatedScalarFieldContainer[float]
    scores: _containers.RepeatedCompositeFieldContainer[ArmContextScore]
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., arms: _Optional[_Iterable[_Union[ArmCoefficients, _Mapping]]] = ..., features: _Optional[_Iterable[float]] = ..., scores: _Optional[_Iterable[_Union[ArmContextScore, _Mapping]]] = ...) -> None: ...

class ArmCoefficients(_message.Message):
    __slots__ = ("arm", "coefficients")
    ARM_FIELD_NUMBER: _ClassVar[int]
    COEFFICIENTS_FIELD_NUMBER: _ClassVar[int]
    arm: str
    coefficients: _containers.RepeatedCompositeFieldContainer[CoefficientEstimate]
    def __init__(self, arm: _Optional[str] = ..., coefficients: _Optional[_Iterable[_Union[CoefficientEstimate, _Mapping]]] = ...) -> None: ...

class CoefficientEstimate(_message.Message):
    __slots__ = ("column", "estimate", "ci_low", "ci_high")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    column: str
    estimate: float
    ci_low: float
    ci_high: float
    def __init__(self, column: _Optional[str] = ..., estimate: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ...) -> None: ...

class ArmContextScore(_message.Message):
    __slots__ = ("arm", "mean", "ci_low", "ci_high", "prob_best")
    ARM_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    PROB_BEST_FIELD_NUMBER: _ClassVar[int]
    arm: str
    mean: float
    ci_low: float
    ci_high: float
    prob_best: float
    def __init__(self, arm: _Optional[str] = ..., mean: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., prob_best: _Optional[float] = ...) -> None: ...

class SampleRatioCheck(_message.Message):
    __slots__ = ("applicable", "mismatch", "p_value", "chi_square", "degrees_of_freedom", "observed", "expected", "deterministic", "skipped", "note")
    class ObservedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ExpectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    APPLICABLE_FIELD_NUMBER: _ClassVar[int]
    MISMATCH_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHI_SQUARE_FIELD_NUMBER: _ClassVar[int]
    DEGREES_OF_FREEDOM_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    DETERMINISTIC_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    applicable: bool
    mismatch: bool
    p_value: float
    chi_square: float
    degrees_of_freedom: int
    observed: _containers.ScalarMap[str, float]
    expected: _containers.ScalarMap[str, float]
    deterministic: int
    skipped: int
    note: str
    def __init__(self, applicable: _Optional[bool] = ..., mismatch: _Optional[bool] = ..., p_value: _Optional[float] = ..., chi_square: _Optional[float] = ..., degrees_of_freedom: _Optional[int] = ..., observed: _Optional[_Mapping[str, float]] = ..., expected: _Optional[_Mapping[str, float]] = ..., deterministic: _Optional[int] = ..., skipped: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class NoveltyCheck(_message.Message):
    __slots__ = ("arm", "units", "first_mean", "later_mean", "decay", "ci_low", "ci_high", "p_value", "detected")
    ARM_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    FIRST_MEAN_FIELD_NUMBER: _ClassVar[int]
    LATER_MEAN_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    DETECTED_FIELD_NUMBER: _ClassVar[int]
    arm: str
    units: int
    first_mean: float
    later_mean: float
    decay: float
    ci_low: float
    ci_high: float
    p_value: float
    detected: bool
    def __init__(self, arm: _Optional[str] = ..., units: _Optional[int] = ..., first_mean: _Optional[float] = ..., later_mean: _Optional[float] = ..., decay: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., p_value: _Optional[float] = ..., detected: _Optional[bool] = ...) -> None: ...

class SegmentReport(_message.Message):
    __slots__ = ("value", "decisions", "arms", "recommendation")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    value: str
    decisions: int
    arms: _containers.RepeatedCompositeFieldContainer[ArmReport]
    recommendation: str
    def __init__(self, value: _Optional[str] = ..., decisions: _Optional[int] = ..., arms: _Optional[_Iterable[_Union[ArmReport, _Mapping]]] = ..., recommendation: _Optional[str] = ...) -> None: ...

class CupedReport(_message.Message):
    __slots__ = ("covariate", "control", "theta", "variance_reduction", "missing", "comparisons")
    COVARIATE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_REDUCTION_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    covariate: str
    control: str
    theta: float
    variance_reduction: float
    missing: int
    comparisons: _containers.RepeatedCompositeFieldContainer[CupedComparison]
    def __init__(self, covariate: _Optional[str] = ..., control: _Optional[str] = ..., theta: _Optional[float] = ..., variance_reduction: _Optional[float] = ..., missing: _Optional[int] = ..., comparisons: _Optional[_Iterable[_Union[CupedComparison, _Mapping]]] = ...) -> None: ...

class CupedComparison(_message.Message):
    __slots__ = ("arm", "n", "control_n", "difference", "ci_low", "ci_high", "adjusted_difference", "adjusted_ci_low", "adjusted_ci_high", "variance_reduction")
    ARM_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    CONTROL_N_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_REDUCTION_FIELD_NUMBER: _ClassVar[int]
    arm: str
    n: int
    control_n: int
    difference: float
    ci_low: float
    ci_high: float
    adjusted_difference: float
    adjusted_ci_low: float
    adjusted_ci_high: float
    variance_reduction: float
    def __init__(self, arm: _Optional[str] = ..., n: _Optional[int] = ..., control_n: _Optional[int] = ..., difference: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., adjusted_difference: _Optional[float] = ..., adjusted_ci_low: _Optional[float] = ..., adjusted_ci_high: _Optional[float] = ..., variance_reduction: _Optional[float] = ...) -> None: ...

class StoppingReport(_message.Message):
    __slots__ = ("winner", "guarantee", "committed_arm", "committed_at", "committed_by", "samples_needed")
    WINNER_FIELD_NUMBER: _ClassVar[int]
    GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_ARM_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_NEEDED_FIELD_NUMBER: _ClassVar[int]
    winner: str
    guarantee: str
    committed_arm: str
    committed_at: _timestamp_pb2.Timestamp
    committed_by: str
    samples_needed: int
    def __init__(self, winner: _Optional[str] = ..., guarantee: _Optional[str] = ..., committed_arm: _Optional[str] = ..., committed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., committed_by: _Optional[str] = ..., samples_needed: _Optional[int] = ...) -> None: ...

class ArmReport(_message.Message):
    __slots__ = ("arm", "state", "decisions", "rewards", "mean", "ci_low", "ci_high", "prob_best", "expected_loss", "recent_share", "drift_detected", "drift_statistic", "anytime_low", "anytime_high", "metrics", "guardrail", "constraint_exclusion", "objective", "objective_ci_low", "objective_ci_high", "pareto_optimal", "pareto_judged", "dominated_by", "significantly_dominated_by", "differences")
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
    ANYTIME_LOW_FIELD_NUMBER: _ClassVar[int]
    ANYTIME_HIGH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_EXCLUSION_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    PARETO_OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    PARETO_JUDGED_FIELD_NUMBER: _ClassVar[int]
    DOMINATED_BY_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANTLY_DOMINATED_BY_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
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
    anytime_low: float
    anytime_high: float
    metrics: _containers.RepeatedCompositeFieldContainer[MetricSummary]
    guardrail: ArmGuardrailReport
    constraint_exclusion: str
    objective: float
    objective_ci_low: float
    objective_ci_high: float
    pareto_optimal: bool
    pareto_judged: bool
    dominated_by: _containers.RepeatedScalarFieldContainer[str]
    significantly_dominated_by: _containers.RepeatedScalarFieldContainer[str]
    differences: _containers.RepeatedCompositeFieldContainer[MetricDifference]
    def __init__(self, arm: _Optional[str] = ..., state: _Optional[_Union[_experiment_pb2.ArmState, str]] = ..., decisions: _Optional[int] = ..., rewards: _Optional[float] = ..., mean: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., prob_best: _Optional[float] = ..., expected_loss: _Optional[float] = ..., recent_share: _Optional[float] = ..., drift_detected: _Optional[bool] = ..., drift_statistic: _Optional[float] = ..., anytime_low: _Optional[float] = ..., anytime_high: _Optional[float] = ..., metrics: _Optional[_Iterable[_Union[MetricSummary, _Mapping]]] = ..., guardrail: _Optional[_Union[ArmGuardrailReport, _Mapping]] = ..., constraint_exclusion: _Optional[str] = ..., objective: _Optional[float] = ..., objective_ci_low: _Optional[float] = ..., objective_ci_high: _Optional[float] = ..., pareto_optimal: _Optional[bool] = ..., pareto_judged: _Optional[bool] = ..., dominated_by: _Optional[_Iterable[str]] = ..., significantly_dominated_by: _Optional[_Iterable[str]] = ..., differences: _Optional[_Iterable[_Union[MetricDifference, _Mapping]]] = ...) -> None: ...

class MetricSummary(_message.Message):
    __slots__ = ("metric", "kind", "direction", "count", "mean", "ci_low", "ci_high", "interval", "p50", "p90", "p99")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P90_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    metric: str
    kind: str
    direction: str
    count: int
    mean: float
    ci_low: float
    ci_high: float
    interval: str
    p50: float
    p90: float
    p99: float
    def __init__(self, metric: _Optional[str] = ..., kind: _Optional[str] = ..., direction: _Optional[str] = ..., count: _Optional[int] = ..., mean: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., interval: _Optional[str] = ..., p50: _Optional[float] = ..., p90: _Optional[float] = ..., p99: _Optional[float] = ...) -> None: ...

class ArmGuardrailReport(_message.Message):
    __slots__ = ("status", "override", "rules")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    status: _experiment_pb2.ArmGuardrail
    override: _experiment_pb2.GuardrailOverride
    rules: _containers.RepeatedCompositeFieldContainer[GuardrailRuleStatus]
    def __init__(self, status: _Optional[_Union[_experiment_pb2.ArmGuardrail, _Mapping]] = ..., override: _Optional[_Union[_experiment_pb2.GuardrailOverride, str]] = ..., rules: _Optional[_Iterable[_Union[GuardrailRuleStatus, _Mapping]]] = ...) -> None: ...

class GuardrailRuleStatus(_message.Message):
    __slots__ = ("rule", "description", "samples", "value", "threshold", "verdict", "tripped")
    RULE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    TRIPPED_FIELD_NUMBER: _ClassVar[int]
    rule: int
    description: str
    samples: int
    value: float
    threshold: float
    verdict: str
    tripped: bool
    def __init__(self, rule: _Optional[int] = ..., description: _Optional[str] = ..., samples: _Optional[int] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., verdict: _Optional[str] = ..., tripped: _Optional[bool] = ...) -> None: ...

class MetricDifference(_message.Message):
    __slots__ = ("metric", "difference", "ci_low", "ci_high", "relative", "better", "significant")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_FIELD_NUMBER: _ClassVar[int]
    BETTER_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    metric: str
    difference: float
    ci_low: float
    ci_high: float
    relative: float
    better: bool
    significant: bool
    def __init__(self, metric: _Optional[str] = ..., difference: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., relative: _Optional[float] = ..., better: _Optional[bool] = ..., significant: _Optional[bool] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("experiment", "limit", "page_size", "page_token")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    limit: int
    page_size: int
    page_token: str
    def __init__(self, experiment: _Optional[str] = ..., limit: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("decision_id", "experiment", "arm", "propensity", "reason", "time", "unit_id", "context", "state_version", "reward", "default_reward_applied", "probabilities", "probabilities_complete", "features", "attributes", "metrics")
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
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
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
    METRICS_FIELD_NUMBER: _ClassVar[int]
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
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, decision_id: _Optional[str] = ..., experiment: _Optional[str] = ..., arm: _Optional[str] = ..., propensity: _Optional[float] = ..., reason: _Optional[_Union[_experiment_pb2.Reason, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unit_id: _Optional[str] = ..., context: _Optional[_Mapping[str, float]] = ..., state_version: _Optional[int] = ..., reward: _Optional[float] = ..., default_reward_applied: _Optional[bool] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., probabilities_complete: _Optional[bool] = ..., features: _Optional[_Iterable[float]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...
