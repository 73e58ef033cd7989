"""Python clients for bandit-router: ``BanditClient`` (blocking) and ``AsyncBanditClient``.

Both set a deadline on every call and retry UNAVAILABLE (and, on Router, a server's
CANCELLED at shutdown) with exponential backoff through
gRPC's own retry policy (a service config without any timeout: grpcio fails every call at
once when a service-config timeout is <= 1 s, grpc/grpc#34547). Retrying Reward is safe
because the server credits each decision at most once and answers DUPLICATE to a retry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio

from bandit_router.v1 import admin_pb2, admin_pb2_grpc, experiment_pb2, router_pb2, router_pb2_grpc

DEFAULT_TIMEOUT = 1.0
ADMIN_TIMEOUT = 10.0


def service_config(max_attempts: int = 4) -> str:
    """Retry UNAVAILABLE everywhere; on Router also CANCELLED sent by the server.

    A server shutting down answers CANCELLED to calls it received but had not yet handed to
    a handler (grpc/grpc#41785: it should be UNAVAILABLE). Those calls did nothing, so a
    retry is the right answer; a call this client cancels itself is never retried. Route
    and Reward are safe to retry (a Reward is credited once); Admin calls are not retried
    on CANCELLED, since a grace period that expired may have cut one short after it acted.
    """

    def retry(*codes: str) -> dict[str, Any]:
        return {
            "maxAttempts": max_attempts,
            "initialBackoff": "0.02s",
            "maxBackoff": "0.5s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": list(codes),
        }

    return json.dumps(
        {
            # gRPC's retry throttling: each failure costs a token, each success gives back
            # 0.1; below 50 tokens no call is retried, so a sustained overload or outage
            # does not get a retry storm on top, while a burst of failures is retried.
            "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
            "methodConfig": [
                {
                    "name": [{"service": "bandit_router.v1.Router"}],
                    "retryPolicy": retry("UNAVAILABLE", "CANCELLED"),
                },
                {
                    "name": [{"service": "bandit_router.v1.Admin"}],
                    "retryPolicy": retry("UNAVAILABLE"),
                },
            ],
        }
    )


@dataclass(frozen=True)
class RouteResult:
    decision_id: str
    arm: str
    propensity: float
    reason: str
    policy: str
    state_version: int
    reward_deadline: datetime

    @classmethod
    def from_pb(cls, response: router_pb2.RouteResponse) -> RouteResult:
        return cls(
            decision_id=response.decision_id,
            arm=response.arm,
            propensity=response.propensity,
            reason=experiment_pb2.Reason.Name(response.reason).removeprefix("REASON_"),
            policy=response.policy,
            state_version=response.state_version,
            reward_deadline=datetime.fromtimestamp(
                response.reward_deadline.seconds + response.reward_deadline.nanos / 1e9, UTC
            ),
        )


def outcome_name(response: router_pb2.RewardResponse) -> str:
    return router_pb2.RewardOutcome.Name(response.outcome).removeprefix("REWARD_OUTCOME_")


def channel_options(max_attempts: int, connection_id: int = 0) -> list[tuple[str, Any]]:
    """Channel arguments; ``max_attempts`` 1 turns retries off (gRPC needs >= 2 in a policy)."""
    options: list[tuple[str, Any]] = [("grpc.keepalive_time_ms", 30_000)]
    if max_attempts >= 2:
        options += [
            ("grpc.service_config", service_config(max_attempts)),
            ("grpc.enable_retries", 1),
        ]
    else:
        options.append(("grpc.enable_retries", 0))
    if connection_id:  # a distinct channel arg gives a distinct HTTP/2 connection
        options.append(("bandit_router.connection_id", connection_id))
    return options


def _metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None


def _request_route(
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


class BanditClient:
    """Blocking client. ``with BanditClient("localhost:50051") as client: client.route(...)``."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        options = channel_options(max_attempts)
        self.channel = (
            grpc.secure_channel(target, credentials, options)
            if credentials is not None
            else grpc.insecure_channel(target, options)
        )
        self.timeout = timeout
        self.metadata = _metadata(token)
        self.router = router_pb2_grpc.RouterStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)

    def __enter__(self) -> BanditClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def route(
        self,
        experiment: str,
        unit_id: str = "",
        excluded_arms: Sequence[str] = (),
        context: Mapping[str, float] | None = None,
        *,
        attributes: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> RouteResult:
        response = self.router.Route(
            _request_route(experiment, unit_id, excluded_arms, context, attributes),
            timeout=timeout or self.timeout,
            metadata=self.metadata,
        )
        return RouteResult.from_pb(response)

    def reward(self, decision_id: str, value: float, *, timeout: float | None = None) -> str:
        """Credit ``value`` to a decision; returns APPLIED, DUPLICATE, LATE_IGNORED, ..."""
        response = self.router.Reward(
            router_pb2.RewardRequest(decision_id=decision_id, value=value),
            timeout=timeout or self.timeout,
            metadata=self.metadata,
        )
        return outcome_name(response)

    def call_admin(self, method: str, request: Any, *, timeout: float = ADMIN_TIMEOUT) -> Any:
        """Any Admin RPC by name, e.g. ``call_admin("PinArm", admin_pb2.PinArmRequest(...))``."""
        return getattr(self.admin, method)(request, timeout=timeout, metadata=self.metadata)

    def create_experiment(
        self,
        name: str,
        arms: Sequence[str],
        *,
        policy: str = "thompson",
        params: Mapping[str, float] | None = None,
        reward_window: float = 3600.0,
        default_reward: float | None = None,
        reason: str = "",
        **fields: Any,
    ) -> experiment_pb2.Experiment:
        experiment = experiment_pb2.Experiment(
            name=name,
            arms=[experiment_pb2.Arm(name=arm) for arm in arms],
            policy=experiment_pb2.PolicySpec(name=policy, params=dict(params or {})),
            **fields,
        )
        experiment.reward_window.FromNanoseconds(int(reward_window * 1e9))
        if default_reward is not None:
            experiment.default_reward = default_reward
        response = self.call_admin(
            "CreateExperiment",
            admin_pb2.CreateExperimentRequest(experiment=experiment, reason=reason),
        )
        return response.experiment  # type: ignore[no-any-return]

    def get_experiment(self, name: str) -> admin_pb2.GetExperimentResponse:
        return self.call_admin("GetExperiment", admin_pb2.GetExperimentRequest(name=name))  # type: ignore[no-any-return]

    def list_experiments(self) -> list[experiment_pb2.Experiment]:
        return list(
            self.call_admin("ListExperiments", admin_pb2.ListExperimentsRequest()).experiments
        )

    def delete_experiment(self, name: str, reason: str = "") -> None:
        self.call_admin(
            "DeleteExperiment", admin_pb2.DeleteExperimentRequest(name=name, reason=reason)
        )

    def export_decisions(
        self, experiment: str, limit: int = 0
    ) -> Iterator[admin_pb2.DecisionRecord]:
        stream = self.admin.ExportDecisions(
            admin_pb2.ExportDecisionsRequest(experiment=experiment, limit=limit),
            timeout=ADMIN_TIMEOUT * 6,
            metadata=self.metadata,
        )
        for response in stream:
            yield response.record


class AsyncBanditClient:
    """asyncio client; open several (``connections``) HTTP/2 connections to spread load over
    the worker processes of a ``--workers N`` server, which share one port."""

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        credentials: grpc.ChannelCredentials | None = None,
        connections: int = 1,
    ) -> None:
        self.channels = [
            grpc.aio.secure_channel(target, credentials, channel_options(max_attempts, i + 1))
            if credentials is not None
            else grpc.aio.insecure_channel(target, channel_options(max_attempts, i + 1))
            for i in range(max(1, connections))
        ]
        self.timeout = timeout
        self.metadata = _metadata(token)
        self._routers = [router_pb2_grpc.RouterStub(channel) for channel in self.channels]
        self.admin = admin_pb2_grpc.AdminStub(self.channels[0])
        self._next = 0

    async def __aenter__(self) -> AsyncBanditClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    def _router(self) -> router_pb2_grpc.RouterStub:
        self._next = (self._next + 1) % len(self._routers)
        return self._routers[self._next]

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
        response = await self._router().Route(
            _request_route(experiment, unit_id, excluded_arms, context, attributes),
            timeout=timeout or self.timeout,
            metadata=self.metadata,
        )
        return RouteResult.from_pb(response)

    async def reward(self, decision_id: str, value: float, *, timeout: float | None = None) -> str:
        response = await self._router().Reward(
            router_pb2.RewardRequest(decision_id=decision_id, value=value),
            timeout=timeout or self.timeout,
            metadata=self.metadata,
        )
        return outcome_name(response)

    async def call_admin(self, method: str, request: Any, *, timeout: float = ADMIN_TIMEOUT) -> Any:
        return await getattr(self.admin, method)(request, timeout=timeout, metadata=self.metadata)
