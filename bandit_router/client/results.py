"""What the clients return: ``RouteResult`` and the enums ``Reason``, ``Outcome``, ``ArmState``.

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
    """Whether Route may choose an arm (``bandit_router.v1.ArmState``)."""

    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"

    def to_pb(self) -> experiment_pb2.ArmState:
        return {
            ArmState.ACTIVE: experiment_pb2.ARM_STATE_ACTIVE,
            ArmState.DISABLED: experiment_pb2.ARM_STATE_DISABLED,
        }[self]


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
