"""What the clients return: ``RouteResult`` and the enums ``Reason``, ``Outcome``, ``ArmState``
and ``GuardrailOverride``.

The enums are ``StrEnum`` members named as the wire enums without their prefix
(``REASON_EXPLOIT`` is ``Reason.EXPLOIT``), so ``result.reason == "EXPLOIT"`` holds and a
type checker still sees an enum. A value a newer server sends that this client does not know
becomes ``UNSPECIFIED`` rather than an exception in the caller's hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from bandit_router.v1 import experiment_pb2, router_pb2


class Reason(StrEnum):
    """Why Route chose the arm it chose (``bandit_router.v1.Reason``)."""

    UNSPECIFIED = "UNSPECIFIED"
    EXPLOIT = "EXPLOIT"
    EXPLORE = "EXPLORE"
    PINNED = "PINNED"
    HOLDOUT = "HOLDOUT"
    FALLBACK = "FALLBACK"
    STICKY = "STICKY"
    PAUSED = "PAUSED"
    BURN_IN = "BURN_IN"
    COMMITTED = "COMMITTED"
    #: A probe decision on a quarantined arm (its guardrail's probe share).
    GUARDRAIL = "GUARDRAIL"

    @classmethod
    def from_pb(cls, value: int) -> Reason:
        name = experiment_pb2.Reason.DESCRIPTOR.values_by_number.get(value)
        key = name.name.removeprefix("REASON_") if name else ""
        return cls.__members__.get(key, cls.UNSPECIFIED)


class Outcome(StrEnum):
    """What Reward did with a reward (``bandit_router.v1.RewardOutcome``)."""

    UNSPECIFIED = "UNSPECIFIED"
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"
    LATE_IGNORED = "LATE_IGNORED"
    LATE_APPLIED = "LATE_APPLIED"
    RECORDED = "RECORDED"

    @classmethod
    def from_pb(cls, value: int) -> Outcome:
        name = router_pb2.RewardOutcome.DESCRIPTOR.values_by_number.get(value)
        key = name.name.removeprefix("REWARD_OUTCOME_") if name else ""
        return cls.__members__.get(key, cls.UNSPECIFIED)


class ArmState(StrEnum):
    """Whether Route may choose an arm (``bandit_router.v1.ArmState``). ``QUARANTINED`` is the
    service's to set (an arm that broke a guardrail gets only probe traffic): read it from
    ``Experiment.arms``; move an arm with ``set_guardrail_override``."""

    UNSPECIFIED = "UNSPECIFIED"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    QUARANTINED = "QUARANTINED"

    def to_pb(self) -> experiment_pb2.ArmState:
        return {
            ArmState.UNSPECIFIED: experiment_pb2.ARM_STATE_UNSPECIFIED,
            ArmState.ACTIVE: experiment_pb2.ARM_STATE_ACTIVE,
            ArmState.DISABLED: experiment_pb2.ARM_STATE_DISABLED,
            ArmState.QUARANTINED: experiment_pb2.ARM_STATE_QUARANTINED,
        }[self]

    @classmethod
    def from_pb(cls, value: int) -> ArmState:
        name = experiment_pb2.ArmState.DESCRIPTOR.values_by_number.get(value)
        key = name.name.removeprefix("ARM_STATE_") if name else ""
        return cls.__members__.get(key, cls.UNSPECIFIED)


class GuardrailOverride(StrEnum):
    """An operator's hand on an arm's guardrails (``bandit_router.v1.GuardrailOverride``):
    ``HOLD_ACTIVE`` never quarantines it (and releases it at once), ``FORCE_QUARANTINE`` keeps
    it quarantined whatever the rules say, ``NONE`` lets the rules decide."""

    NONE = "NONE"
    HOLD_ACTIVE = "HOLD_ACTIVE"
    FORCE_QUARANTINE = "FORCE_QUARANTINE"

    def to_pb(self) -> experiment_pb2.GuardrailOverride:
        return {
            GuardrailOverride.NONE: experiment_pb2.GUARDRAIL_OVERRIDE_UNSPECIFIED,
            GuardrailOverride.HOLD_ACTIVE: experiment_pb2.GUARDRAIL_OVERRIDE_HOLD_ACTIVE,
            GuardrailOverride.FORCE_QUARANTINE: experiment_pb2.GUARDRAIL_OVERRIDE_FORCE_QUARANTINE,
        }[self]

    @classmethod
    def from_pb(cls, value: int) -> GuardrailOverride:
        name = experiment_pb2.GuardrailOverride.DESCRIPTOR.values_by_number.get(value)
        key = name.name.removeprefix("GUARDRAIL_OVERRIDE_") if name else ""
        return cls.__members__.get(key, cls.NONE)


@dataclass(frozen=True)
class RouteResult:
    """One decision: the arm to serve and what Reward needs to credit it."""

    decision_id: str
    arm: str
    propensity: float
    reason: Reason
    policy: str
    state_version: int
    reward_deadline: datetime

    @classmethod
    def from_pb(cls, response: router_pb2.RouteResponse) -> RouteResult:
        return cls(
            decision_id=response.decision_id,
            arm=response.arm,
            propensity=response.propensity,
            reason=Reason.from_pb(response.reason),
            policy=response.policy,
            state_version=response.state_version,
            reward_deadline=datetime.fromtimestamp(
                response.reward_deadline.seconds + response.reward_deadline.nanos / 1e9, UTC
            ),
        )


def outcome_name(response: router_pb2.RewardResponse) -> Outcome:
    """The outcome of a RewardResponse (kept for callers of the earlier helper)."""
    return Outcome.from_pb(response.outcome)
