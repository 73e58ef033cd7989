"""``AsyncBanditClient``: the asyncio client, with the same calls as ``BanditClient``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from bandit_router.client import requests
from bandit_router.client.channels import ChannelOptions, aio_channel, channel_options
from bandit_router.client.errors import Aborted, typed_errors
from bandit_router.client.results import ArmState, GuardrailOverride, Outcome, RouteResult
from bandit_router.client.sync import (
    ADMIN_TIMEOUT,
    DEFAULT_TIMEOUT,
    bearer_metadata,
    check_channel_arguments,
)
from bandit_router.v1 import admin_pb2, admin_pb2_grpc, experiment_pb2, router_pb2_grpc


class AsyncBanditClient:
    """asyncio client: ``async with AsyncBanditClient("localhost:50051") as client: ...``.

    ``connections=N`` opens N HTTP/2 connections and spreads Route and Reward over them, so
    the worker processes of a ``--workers N`` server (which share one port) share the load.
    ``channel=`` takes your own ``grpc.aio.Channel`` (closing it stays yours); otherwise
    ``options`` and ``interceptors`` (``grpc.aio.ClientInterceptor``) go to the channels the
    client makes. Failures raise typed ``ClientError`` subclasses.
    """

    def __init__(
        self,
        target: str = "",
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        admin_timeout: float = ADMIN_TIMEOUT,
        max_attempts: int = 4,
        credentials: grpc.ChannelCredentials | None = None,
        connections: int = 1,
        options: ChannelOptions = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        check_channel_arguments(channel, target, credentials, options)
        if channel is not None and interceptors:
            raise ValueError("grpc.aio takes interceptors when a channel is made: pass them there")
        self._owns_channels = channel is None
        self.channels = (
            [channel]
            if channel is not None
            else [
                aio_channel(
                    target,
                    credentials,
                    channel_options(max_attempts, i + 1, extra=options),
                    interceptors,
                )
                for i in range(max(1, connections))
            ]
        )
        self.timeout = timeout
        self.admin_timeout = admin_timeout
        self.metadata = bearer_metadata(token)
        self._routers = [router_pb2_grpc.RouterStub(c) for c in self.channels]
        self.admin = admin_pb2_grpc.AdminStub(self.channels[0])
        self._next = 0

    async def __aenter__(self) -> AsyncBanditClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channels this client made."""
        if self._owns_channels:
            for channel in self.channels:
                await channel.close()

    def _router(self) -> router_pb2_grpc.RouterStub:
        self._next = (self._next + 1) % len(self._routers)
        return self._routers[self._next]

    # -- Router -----------------------------------------------------------------------------

    async def route(
        self,
        experiment: str,
        unit_id: str = "",
        excluded_arms: Sequence[str] = (),
        context: Mapping[str, float] | None = None,
        *,
        attributes: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> RouteResult:
        with typed_errors():
            response = await self._router().Route(
                requests.route(experiment, unit_id, excluded_arms, context, attributes),
                timeout=timeout or self.timeout,
                metadata=self.metadata,
            )
        return RouteResult.from_pb(response)

    async def reward(
        self,
        decision_id: str,
        value: float | None = None,
        *,
        metrics: Mapping[str, float] | None = None,
        timeout: float | None = None,
    ) -> Outcome:
        with typed_errors():
            response = await self._router().Reward(
                requests.reward(decision_id, value, metrics),
                timeout=timeout or self.timeout,
                metadata=self.metadata,
            )
        return Outcome.from_pb(response.outcome)

    # -- Admin ------------------------------------------------------------------------------

    async def call_admin(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        with typed_errors():
            return await getattr(self.admin, method)(
                request, timeout=timeout or self.admin_timeout, metadata=self.metadata
            )

    async def create_experiment(
        self,
        name: str | experiment_pb2.Experiment,
        arms: Sequence[str] = (),
        *,
        policy: str = "thompson",
        params: Mapping[str, float] | None = None,
        reward_window: float = 3600.0,
        default_reward: float | None = None,
        reason: str = "",
        **fields: Any,
    ) -> experiment_pb2.Experiment:
        request = requests.create_experiment(
            name,
            arms,
            policy=policy,
            params=params,
            reward_window=reward_window,
            default_reward=default_reward,
            reason=reason,
            fields=fields,
        )
        response: admin_pb2.CreateExperimentResponse = await self.call_admin(
            "CreateExperiment", request
        )
        return response.experiment

    async def get_experiment(self, name: str) -> admin_pb2.GetExperimentResponse:
        response: admin_pb2.GetExperimentResponse = await self.call_admin(
            "GetExperiment", admin_pb2.GetExperimentRequest(name=name)
        )
        return response

    async def list_all(
        self, method: str, request: Any, items: str, *, limit: int | None = None
    ) -> list[Any]:
        """Every item of a paginated List* call, following ``next_page_token`` (at most
        ``limit`` of them when given): ``items`` names the response's repeated field."""
        found: list[Any] = []
        while True:
            response = await self.call_admin(method, request)
            found += getattr(response, items)
            if not response.next_page_token or (limit is not None and len(found) >= limit):
                return found if limit is None else found[:limit]
            request.page_token = response.next_page_token

    async def list_experiments(self, *, page_size: int = 0) -> list[experiment_pb2.Experiment]:
        """Every experiment, in name order, fetched ``page_size`` at a time (0: the server's
        default, 100)."""
        request = admin_pb2.ListExperimentsRequest(page_size=page_size)
        return await self.list_all("ListExperiments", request, "experiments")

    async def update_experiment(
        self,
        experiment: experiment_pb2.Experiment,
        *,
        expected_version: int = 0,
        update_mask: Sequence[str] = (),
        reason: str = "",
    ) -> experiment_pb2.Experiment:
        request = requests.update_experiment(
            experiment, expected_version=expected_version, update_mask=update_mask, reason=reason
        )
        response: admin_pb2.UpdateExperimentResponse = await self.call_admin(
            "UpdateExperiment", request
        )
        return response.experiment

    async def delete_experiment(self, name: str, reason: str = "") -> None:
        await self.call_admin(
            "DeleteExperiment", admin_pb2.DeleteExperimentRequest(name=name, reason=reason)
        )

    async def add_arm(
        self,
        experiment: str,
        arm: str,
        *,
        prior_n: float = 0.0,
        prior_sum: float = 0.0,
        prior_sum_sq: float = 0.0,
        reason: str = "",
    ) -> experiment_pb2.Experiment:
        request = requests.add_arm(
            experiment,
            arm,
            prior_n=prior_n,
            prior_sum=prior_sum,
            prior_sum_sq=prior_sum_sq,
            reason=reason,
        )
        response: admin_pb2.AddArmResponse = await self.call_admin("AddArm", request)
        return response.experiment

    async def remove_arm(
        self, experiment: str, arm: str, *, reason: str = ""
    ) -> experiment_pb2.Experiment:
        request = admin_pb2.RemoveArmRequest(experiment=experiment, arm=arm, reason=reason)
        response: admin_pb2.RemoveArmResponse = await self.call_admin("RemoveArm", request)
        return response.experiment

    async def set_arm_state(
        self, experiment: str, arm: str, state: ArmState | str, *, reason: str = ""
    ) -> experiment_pb2.Experiment:
        request = requests.set_arm_state(experiment, arm, state, reason)
        response: admin_pb2.SetArmStateResponse = await self.call_admin("SetArmState", request)
        return response.experiment

    async def set_guardrail_override(
        self,
        experiment: str,
        arm: str,
        override: GuardrailOverride | str,
        *,
        reason: str = "",
    ) -> experiment_pb2.Experiment:
        for attempt in range(requests.OVERRIDE_ATTEMPTS):
            current = (await self.get_experiment(experiment)).experiment
            request = requests.guardrail_override(current, arm, override, reason)
            try:
                response: admin_pb2.UpdateExperimentResponse = await self.call_admin(
                    "UpdateExperiment", request
                )
            except Aborted:
                if attempt + 1 == requests.OVERRIDE_ATTEMPTS:
                    raise
                continue
            return response.experiment
        raise AssertionError("unreachable")

    async def pin_arm(
        self, experiment: str, arm: str, *, unit_id: str = "", ttl: float = 0.0, reason: str = ""
    ) -> experiment_pb2.Experiment:
        request = requests.pin_arm(experiment, arm, unit_id=unit_id, ttl=ttl, reason=reason)
        response: admin_pb2.PinArmResponse = await self.call_admin("PinArm", request)
        return response.experiment

    async def unpin(
        self, experiment: str, *, unit_id: str = "", reason: str = ""
    ) -> experiment_pb2.Experiment:
        request = admin_pb2.UnpinRequest(experiment=experiment, unit_id=unit_id, reason=reason)
        response: admin_pb2.UnpinResponse = await self.call_admin("Unpin", request)
        return response.experiment

    async def pause(
        self, experiment: str, *, arm: str = "", reason: str = ""
    ) -> experiment_pb2.Experiment:
        request = admin_pb2.PauseRequest(experiment=experiment, arm=arm, reason=reason)
        response: admin_pb2.PauseResponse = await self.call_admin("Pause", request)
        return response.experiment

    async def resume(self, experiment: str, *, reason: str = "") -> experiment_pb2.Experiment:
        request = admin_pb2.ResumeRequest(experiment=experiment, reason=reason)
        response: admin_pb2.ResumeResponse = await self.call_admin("Resume", request)
        return response.experiment

    async def reset(self, experiment: str, *, reason: str = "") -> admin_pb2.Snapshot:
        request = admin_pb2.ResetRequest(experiment=experiment, reason=reason)
        response: admin_pb2.ResetResponse = await self.call_admin("Reset", request)
        return response.snapshot

    async def list_snapshots(self, experiment: str) -> list[admin_pb2.Snapshot]:
        """Every snapshot the experiment keeps, newest first."""
        request = admin_pb2.ListSnapshotsRequest(experiment=experiment)
        return await self.list_all("ListSnapshots", request, "snapshots")

    async def get_report(
        self, experiment: str, *, window: float = 3600.0
    ) -> admin_pb2.GetReportResponse:
        response: admin_pb2.GetReportResponse = await self.call_admin(
            "GetReport", requests.get_report(experiment, window)
        )
        return response

    async def list_audit(
        self, experiment: str, *, limit: int | None = 100
    ) -> list[admin_pb2.AuditEntry]:
        """The newest ``limit`` audit entries (None: all the log keeps), newest first."""
        request = requests.list_audit(experiment, limit)
        return await self.list_all("ListAudit", request, "entries", limit=limit)

    async def export_decisions(
        self, experiment: str, limit: int = 0, since: float = 0.0
    ) -> AsyncIterator[admin_pb2.DecisionRecord]:
        with typed_errors():
            stream = self.admin.ExportDecisions(
                requests.export_decisions(experiment, limit, since),
                timeout=self.admin_timeout * 6,
                metadata=self.metadata,
            )
            async for response in stream:
                yield response.record
