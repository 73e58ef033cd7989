"""gRPC servicers: translate messages, check the caller's role, map domain errors to statuses.

No logic lives here. A domain error becomes its canonical status with a message naming the
field and the rich details a client can act on (serving.statuses: ErrorInfo with a specific
reason, BadRequest, ResourceInfo, RetryInfo); anything unexpected is logged and answered
INTERNAL without a stack trace. A field is named as the request spells it: the store says
``experiment``, GetExperiment's request says ``name``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from bandit_router.analysis.exports import decision_records
from bandit_router.analysis.log_checks import CheckOptions
from bandit_router.analysis.reports import ReportBuilder
from bandit_router.errors import BanditRouterError, InvalidArgument
from bandit_router.model.convert import (
    arm_of,
    arm_state_of,
    experiment_of,
    experiment_to_pb,
    merge_update,
    seconds_of,
    timestamp_of,
)
from bandit_router.model.experiments import ArmState
from bandit_router.operations.admin import AdminOperations
from bandit_router.operations.auth import OPERATOR, ROUTER, Authenticator
from bandit_router.reward.rewards import RewardProcessor
from bandit_router.route.cache import contextual_stats
from bandit_router.route.router import Router
from bandit_router.serving.statuses import abort_with
from bandit_router.store.errors import is_store_error, unavailable
from bandit_router.telemetry.logs import clip
from bandit_router.v1 import admin_pb2, admin_pb2_grpc, experiment_pb2, router_pb2, router_pb2_grpc

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]

_REASON_TO_PB: dict[str, experiment_pb2.Reason] = {
    "EXPLOIT": experiment_pb2.REASON_EXPLOIT,
    "EXPLORE": experiment_pb2.REASON_EXPLORE,
    "PINNED": experiment_pb2.REASON_PINNED,
    "HOLDOUT": experiment_pb2.REASON_HOLDOUT,
    "FALLBACK": experiment_pb2.REASON_FALLBACK,
    "STICKY": experiment_pb2.REASON_STICKY,
    "PAUSED": experiment_pb2.REASON_PAUSED,
    "BURN_IN": experiment_pb2.REASON_BURN_IN,
    "COMMITTED": experiment_pb2.REASON_COMMITTED,
    "GUARDRAIL": experiment_pb2.REASON_GUARDRAIL,
}
_OUTCOME_TO_PB: dict[str, router_pb2.RewardOutcome] = {
    "APPLIED": router_pb2.REWARD_OUTCOME_APPLIED,
    "DUPLICATE": router_pb2.REWARD_OUTCOME_DUPLICATE,
    "LATE_IGNORED": router_pb2.REWARD_OUTCOME_LATE_IGNORED,
    "LATE_APPLIED": router_pb2.REWARD_OUTCOME_LATE_APPLIED,
    "RECORDED": router_pb2.REWARD_OUTCOME_RECORDED,
}


@contextmanager
def request_field(said: str, named: str) -> Iterator[None]:
    """Errors about the field ``said`` (as the store and the operations name it) are about
    the request's field ``named``: GetExperiment's experiment is its ``name``."""
    try:
        yield
    except BanditRouterError as error:
        if error.field != said:
            raise
        raise error.at(named) from error


def _logged(request: Any, name: str) -> str | None:
    value = getattr(request, name, "")
    return clip(value) if value else None


def log_refusal(method: str, error: BanditRouterError, request: Any) -> None:
    """One INFO line per refused call, every client-supplied part of it bounded (``clip``)."""
    log.info(
        "%s refused: %s %s",
        method,
        error.code,
        clip(str(error)),
        extra={
            "method": method,
            "code": error.code,
            "field": clip(error.field),
            "decision_id": _logged(request, "decision_id"),
            "experiment": _logged(request, "experiment"),
        },
    )


def handles_errors(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await method(self, request, context)
        except BanditRouterError as error:
            log_refusal(method.__name__, error, request)
            await abort_with(context, error)
            raise AssertionError("unreachable") from error
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            if is_store_error(error):  # logged, throttled, by unavailable()
                mapped = unavailable(error, method.__name__)
                assert isinstance(mapped, BanditRouterError)
                await abort_with(context, mapped)
                raise AssertionError("unreachable") from error
            log.exception("unexpected error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")
            raise

    return wrapper


def remaining(context: grpc.aio.ServicerContext[Any, Any], default: float = 5.0) -> float:
    """How long a store call may take: a little less than the caller's deadline, so the
    caller hears UNAVAILABLE (retryable) rather than its own DEADLINE_EXCEEDED."""
    left = context.time_remaining()
    if left is None:
        return default
    return max(0.0, min(left * 0.9 - 0.005, default))


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, router: Router, rewards: RewardProcessor, auth: Authenticator) -> None:
        self.router = router
        self.rewards = rewards
        self.auth = auth

    @handles_errors
    async def Route(
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.RouteResponse:
        if self.auth.router_required:
            self.auth.authorize(context, ROUTER)
        attributes = request.attributes
        decision = self.router.route_plain(
            request.experiment, request.unit_id, request.excluded_arms, request.context, attributes
        ) or await self.router.route(
            request.experiment,
            request.unit_id,
            request.excluded_arms,
            request.context,
            attributes,
        )
        response = router_pb2.RouteResponse(
            decision_id=decision.decision_id,
            arm=decision.arm,
            propensity=decision.propensity,
            reason=_REASON_TO_PB[decision.reason],
            policy=decision.policy,
            state_version=decision.state_version,
        )
        seconds, millis = divmod(decision.reward_deadline_ms, 1000)
        deadline = response.reward_deadline
        deadline.seconds = seconds
        deadline.nanos = millis * 1_000_000
        return response

    @handles_errors
    async def Reward(
        self, request: router_pb2.RewardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.RewardResponse:
        if self.auth.router_required:
            self.auth.authorize(context, ROUTER)
        if request.metrics:
            outcome = await self.rewards.reward(
                request.decision_id,
                request.value,
                remaining(context),
                dict(request.metrics),
                value_set=request.HasField("value"),
            )
        else:
            outcome = await self.rewards.reward(
                request.decision_id, request.value, remaining(context)
            )
        return router_pb2.RewardResponse(outcome=_OUTCOME_TO_PB[outcome])


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(
        self, operations: AdminOperations, reports: ReportBuilder, auth: Authenticator
    ) -> None:
        self.ops = operations
        self.reports = reports
        self.auth = auth

    def _principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        return self.auth.authorize(context, OPERATOR)

    @handles_errors
    async def CreateExperiment(
        self,
        request: admin_pb2.CreateExperimentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.CreateExperimentResponse:
        principal = self._principal(context)
        if not request.HasField("experiment"):
            raise InvalidArgument("is required", "experiment")
        created = await self.ops.create(
            experiment_of(request.experiment), principal, request.reason
        )
        return admin_pb2.CreateExperimentResponse(experiment=experiment_to_pb(created))

    @handles_errors
    async def GetExperiment(
        self, request: admin_pb2.GetExperimentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.GetExperimentResponse:
        self._principal(context)
        with request_field("experiment", "name"):
            state = await self.ops.get(request.name)
        statistics = [
            admin_pb2.ArmStatistics(
                arm=arm,
                n=state.arm_stat(arm, "n"),
                sum=state.arm_stat(arm, "sum"),
                sum_sq=state.arm_stat(arm, "sum_sq"),
                decisions=int(state.arm_stat(arm, "decisions")),
            )
            for arm in state.experiment.arm_names
        ]
        if state.experiment.policy.contextual:  # A and b per arm, for promote and tools
            contextual = contextual_stats(state, len(state.experiment.feature_columns))
            for k, entry in enumerate(statistics):
                entry.gram.extend(contextual.gram[k].reshape(-1).tolist())
                entry.b.extend(contextual.b[k].tolist())
        return admin_pb2.GetExperimentResponse(
            experiment=experiment_to_pb(state.experiment), statistics=statistics
        )

    @handles_errors
    async def ListExperiments(
        self, request: admin_pb2.ListExperimentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ListExperimentsResponse:
        self._principal(context)
        experiments, next_token = await self.ops.list_page(request.page_size, request.page_token)
        return admin_pb2.ListExperimentsResponse(
            experiments=[experiment_to_pb(e) for e in experiments], next_page_token=next_token
        )

    @handles_errors
    async def UpdateExperiment(
        self,
        request: admin_pb2.UpdateExperimentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.UpdateExperimentResponse:
        principal = self._principal(context)
        if not request.HasField("experiment"):
            raise InvalidArgument("is required", "experiment")
        with request_field("experiment", "experiment.name"):
            updated = await self.ops.update(
                request.experiment.name,
                lambda current: merge_update(current, request.experiment, request.update_mask),
                principal,
                request.reason,
                request.expected_version,
                list(request.update_mask.paths),
                reset_statistics=request.reset_statistics,
            )
        return admin_pb2.UpdateExperimentResponse(experiment=experiment_to_pb(updated))

    @handles_errors
    async def DeleteExperiment(
        self,
        request: admin_pb2.DeleteExperimentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.DeleteExperimentResponse:
        principal = self._principal(context)
        with request_field("experiment", "name"):
            await self.ops.delete(request.name, principal, request.reason)
        return admin_pb2.DeleteExperimentResponse()

    @handles_errors
    async def AddArm(
        self, request: admin_pb2.AddArmRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.AddArmResponse:
        principal = self._principal(context)
        experiment = await self.ops.add_arm(
            request.experiment, arm_of(request.arm, "arm"), principal, request.reason
        )
        return admin_pb2.AddArmResponse(experiment=experiment_to_pb(experiment))

    @handles_errors
    async def RemoveArm(
        self, request: admin_pb2.RemoveArmRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.RemoveArmResponse:
        principal = self._principal(context)
        experiment = await self.ops.remove_arm(
            request.experiment, request.arm, principal, request.reason
        )
        return admin_pb2.RemoveArmResponse(experiment=experiment_to_pb(experiment))

    @handles_errors
    async def SetArmState(
        self, request: admin_pb2.SetArmStateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.SetArmStateResponse:
        principal = self._principal(context)
        if request.state not in (
            experiment_pb2.ARM_STATE_ACTIVE,
            experiment_pb2.ARM_STATE_DISABLED,
        ):
            raise InvalidArgument(
                "must be ARM_STATE_ACTIVE or ARM_STATE_DISABLED (quarantine is the guardrails' "
                "state: set Arm.guardrail_override to force or hold an arm, e.g. "
                "bandit-router guardrail force)",
                "state",
            )
        state: ArmState = arm_state_of(request.state, "state")
        experiment = await self.ops.set_arm_state(
            request.experiment, request.arm, state, principal, request.reason
        )
        return admin_pb2.SetArmStateResponse(experiment=experiment_to_pb(experiment))

    @handles_errors
    async def PinArm(
        self, request: admin_pb2.PinArmRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.PinArmResponse:
        principal = self._principal(context)
        experiment = await self.ops.pin(
            request.experiment,
            request.arm,
            principal,
            unit_id=request.unit_id,
            ttl=seconds_of(request.ttl, "ttl", 0.0),
            reason=request.reason,
        )
        return admin_pb2.PinArmResponse(experiment=experiment_to_pb(experiment))

    @handles_errors
    async def Unpin(
        self, request: admin_pb2.UnpinRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.UnpinResponse:
        principal = self._principal(context)
        experiment = await self.ops.unpin(
            request.experiment, principal, unit_id=request.unit_id, reason=request.reason
        )
        return admin_pb2.UnpinResponse(experiment=experiment_to_pb(experiment))

    @handles_errors
    async def Pause(
        self, request: admin_pb2.PauseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.PauseResponse:
        principal = self._principal(context)
        experiment = await self.ops.pause(
            request.experiment, principal, arm=request.arm, reason=request.reason
        )
        return admin_pb2.PauseResponse(experiment=experiment_to_pb(experiment))

    @handles_errors
    async def Resume(
        self, request: admin_pb2.ResumeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ResumeResponse:
        principal = self._principal(context)
        experiment = await self.ops.resume(request.experiment, principal, reason=request.reason)
        return admin_pb2.ResumeResponse(experiment=experiment_to_pb(experiment))

    @handles_errors
    async def Reset(
        self, request: admin_pb2.ResetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ResetResponse:
        principal = self._principal(context)
        snapshot = await self.ops.reset(request.experiment, principal, reason=request.reason)
        return admin_pb2.ResetResponse(snapshot=snapshot_to_pb(snapshot))

    @handles_errors
    async def ListSnapshots(
        self, request: admin_pb2.ListSnapshotsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ListSnapshotsResponse:
        self._principal(context)
        snapshots, next_token = await self.ops.snapshots(
            request.experiment, request.page_size, request.page_token
        )
        return admin_pb2.ListSnapshotsResponse(
            snapshots=[snapshot_to_pb(s) for s in snapshots], next_page_token=next_token
        )

    @handles_errors
    async def GetReport(
        self, request: admin_pb2.GetReportRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.GetReportResponse:
        self._principal(context)
        window = seconds_of(request.window, "window", 3600.0)
        options = CheckOptions(
            by=request.by,
            covariate=request.covariate,
            control=request.control,
            first_exposures=request.first_exposures or 1,
        )
        return await self.reports.report(
            request.experiment,
            window,
            options,
            context=dict(request.context),
            attributes=dict(request.attributes),
        )

    @handles_errors
    async def ListAudit(
        self, request: admin_pb2.ListAuditRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> admin_pb2.ListAuditResponse:
        self._principal(context)
        entries, next_token = await self.ops.audit(
            request.experiment, request.limit, request.page_size, request.page_token
        )
        return admin_pb2.ListAuditResponse(
            next_page_token=next_token,
            entries=[
                admin_pb2.AuditEntry(
                    id=entry_id,
                    time=timestamp_of(float(fields.get("time", 0.0))),
                    principal=fields.get("principal", ""),
                    action=fields.get("action", ""),
                    arguments=fields.get("arguments", "{}"),
                    reason=fields.get("reason", ""),
                )
                for entry_id, fields in entries
            ],
        )

    async def ExportDecisions(
        self, request: admin_pb2.ExportDecisionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[admin_pb2.ExportDecisionsResponse]:
        try:
            self._principal(context)
            async for record in decision_records(
                self.ops.store, request.experiment, request.since.seconds * 1000, request.limit
            ):
                yield admin_pb2.ExportDecisionsResponse(record=record)
        except BanditRouterError as error:
            log_refusal("ExportDecisions", error, request)
            await abort_with(context, error)
        except Exception as error:
            if not is_store_error(error):
                raise
            mapped = unavailable(error, "ExportDecisions")
            assert isinstance(mapped, BanditRouterError)
            await abort_with(context, mapped)


def snapshot_to_pb(snapshot: dict[str, Any]) -> admin_pb2.Snapshot:
    stats: dict[str, str] = snapshot.get("statistics", {})
    arms = sorted({field.rsplit(":", 1)[0] for field in stats if not field.startswith("_")})
    return admin_pb2.Snapshot(
        id=str(snapshot.get("id", "")),
        taken_at=timestamp_of(float(snapshot.get("taken_at", 0.0))),
        reason=str(snapshot.get("reason", "")),
        principal=str(snapshot.get("principal", "")),
        statistics=[
            admin_pb2.ArmStatistics(
                arm=arm,
                n=float(stats.get(f"{arm}:n", 0.0)),
                sum=float(stats.get(f"{arm}:sum", 0.0)),
                sum_sq=float(stats.get(f"{arm}:sum_sq", 0.0)),
                decisions=int(float(stats.get(f"{arm}:decisions", 0))),
            )
            for arm in arms
        ],
    )
