"""The request messages of every call, built once for both clients (blocking and asyncio)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from bandit_router.client.errors import ErrorInfo, NotFound, ResourceInfo
from bandit_router.client.results import ArmState, GuardrailOverride
from bandit_router.errors import ERROR_DOMAIN, ErrorReason
from bandit_router.v1 import admin_pb2, experiment_pb2, router_pb2


def duration(seconds: float) -> Duration:
    """A protobuf Duration of ``seconds`` (nanosecond precision)."""
    value = Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def route(
    experiment: str,
    unit_id: str,
    excluded_arms: Sequence[str],
    context: Mapping[str, float] | None,
    attributes: Mapping[str, str] | None = None,
) -> router_pb2.RouteRequest:
    return router_pb2.RouteRequest(
        experiment=experiment,
        unit_id=unit_id,
        excluded_arms=list(excluded_arms),
        context=dict(context or {}),
        attributes=dict(attributes or {}),
    )


def reward(
    decision_id: str, value: float | None, metrics: Mapping[str, float] | None = None
) -> router_pb2.RewardRequest:
    """``value`` None leaves it unset: 0 without an objective, the objective's value with one."""
    request = router_pb2.RewardRequest(decision_id=decision_id, metrics=dict(metrics or {}))
    if value is not None:
        request.value = value
    return request


def create_experiment(
    name: str | experiment_pb2.Experiment,
    arms: Sequence[str],
    *,
    policy: str,
    params: Mapping[str, float] | None,
    reward_window: float,
    default_reward: float | None,
    reason: str,
    fields: Mapping[str, Any],
) -> admin_pb2.CreateExperimentRequest:
    """From a whole ``Experiment`` message as is, or from a name, arms and settings."""
    if isinstance(name, experiment_pb2.Experiment):
        return admin_pb2.CreateExperimentRequest(experiment=name, reason=reason)
    experiment = experiment_pb2.Experiment(
        name=name,
        arms=[experiment_pb2.Arm(name=arm) for arm in arms],
        policy=experiment_pb2.PolicySpec(name=policy, params=dict(params or {})),
        **fields,
    )
    experiment.reward_window.CopyFrom(duration(reward_window))
    if default_reward is not None:
        experiment.default_reward = default_reward
    return admin_pb2.CreateExperimentRequest(experiment=experiment, reason=reason)


def update_experiment(
    experiment: experiment_pb2.Experiment,
    *,
    expected_version: int,
    update_mask: Sequence[str],
    reason: str,
) -> admin_pb2.UpdateExperimentRequest:
    return admin_pb2.UpdateExperimentRequest(
        experiment=experiment,
        update_mask=FieldMask(paths=list(update_mask)),
        expected_version=expected_version,
        reason=reason,
    )


def add_arm(
    experiment: str,
    arm: str,
    *,
    prior_n: float,
    prior_sum: float,
    prior_sum_sq: float,
    reason: str,
) -> admin_pb2.AddArmRequest:
    return admin_pb2.AddArmRequest(
        experiment=experiment,
        arm=experiment_pb2.Arm(
            name=arm, prior_n=prior_n, prior_sum=prior_sum, prior_sum_sq=prior_sum_sq
        ),
        reason=reason,
    )


def guardrail_override(
    current: experiment_pb2.Experiment,
    arm: str,
    override: GuardrailOverride | str,
    reason: str,
) -> admin_pb2.UpdateExperimentRequest:
    """The UpdateExperiment that sets one arm's override: the mask ``arms`` with every arm as
    ``current`` has it, and ``expected_version``, so that a concurrent change (a guardrail
    transition, another operator) is ABORTED rather than overwritten. ``override`` is a
    ``GuardrailOverride`` or its name, any case (``"hold_active"``)."""
    wanted = GuardrailOverride(str(override).upper()).to_pb()
    message = experiment_pb2.Experiment(name=current.name)
    message.arms.extend(current.arms)
    for entry in message.arms:
        if entry.name == arm:
            entry.guardrail_override = wanted
            break
    else:
        raise NotFound(
            grpc.StatusCode.NOT_FOUND,
            f"arm: experiment {current.name!r} has no arm {arm!r}",
            error_info=ErrorInfo(ErrorReason.ARM_NOT_FOUND, ERROR_DOMAIN, {"field": "arm"}),
            resource=ResourceInfo("arm", f"experiments/{current.name}/arms/{arm}"),
        )
    return update_experiment(
        message, expected_version=current.version, update_mask=["arms"], reason=reason
    )


#: Attempts of ``set_guardrail_override`` when the experiment changes between its read and
#: its write (ABORTED): each re-reads it.
OVERRIDE_ATTEMPTS = 5


def set_arm_state(
    experiment: str, arm: str, state: ArmState | str, reason: str
) -> admin_pb2.SetArmStateRequest:
    """``state`` is an ``ArmState`` or its name (``"disabled"`` or ``"DISABLED"``)."""
    return admin_pb2.SetArmStateRequest(
        experiment=experiment,
        arm=arm,
        state=ArmState(str(state).upper()).to_pb(),
        reason=reason,
    )


def pin_arm(
    experiment: str, arm: str, *, unit_id: str, ttl: float, reason: str
) -> admin_pb2.PinArmRequest:
    return admin_pb2.PinArmRequest(
        experiment=experiment, arm=arm, unit_id=unit_id, ttl=duration(ttl), reason=reason
    )


def get_report(experiment: str, window: float) -> admin_pb2.GetReportRequest:
    return admin_pb2.GetReportRequest(experiment=experiment, window=duration(window))


#: The server's largest page (ListAudit's page_size is reduced to it).
MAX_PAGE_SIZE = 1000


def list_audit(experiment: str, limit: int | None) -> admin_pb2.ListAuditRequest:
    """Pages of ``limit`` entries (the server's largest when more, or all: None)."""
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive or None, got {limit}")
    size = MAX_PAGE_SIZE if limit is None else min(limit, MAX_PAGE_SIZE)
    return admin_pb2.ListAuditRequest(experiment=experiment, page_size=size)


def export_decisions(experiment: str, limit: int, since: float) -> admin_pb2.ExportDecisionsRequest:
    """``since`` in unix seconds (0: the whole retained log); the server reads whole seconds."""
    request = admin_pb2.ExportDecisionsRequest(experiment=experiment, limit=limit)
    if since > 0:
        request.since.FromNanoseconds(int(since * 1e9))
    return request
