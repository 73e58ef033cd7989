"""``BanditClient``: the blocking client (Route, Reward and every Admin call, typed)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from bandit_router.client import requests
from bandit_router.client.channels import ChannelOptions, channel_options, sync_channel
from bandit_router.client.errors import Aborted, typed_errors
from bandit_router.client.results import ArmState, GuardrailOverride, Outcome, RouteResult
from bandit_router.v1 import admin_pb2, admin_pb2_grpc, experiment_pb2, router_pb2_grpc

#: Seconds: the default deadline of Route and Reward, and of Admin calls.
DEFAULT_TIMEOUT = 1.0
ADMIN_TIMEOUT = 10.0


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None


def check_channel_arguments(
    channel: object, target: str, credentials: object, options: ChannelOptions
) -> None:
    """A caller's own channel already has its target, credentials and options."""
    if channel is None and not target:
        raise ValueError("give a target (host:port) or a channel")
    if channel is not None and (target or credentials is not None or options):
        raise ValueError("target, credentials and options belong to the channel you passed")


class BanditClient:
    """Blocking client: ``with BanditClient("localhost:50051") as client: client.route(...)``.

    Every call has a deadline (``timeout`` for Route and Reward, ``admin_timeout`` for Admin)
    and raises a typed ``ClientError`` (``NotFound``, ``InvalidArgument``...) on failure.
    Bring your own channel with ``channel=`` (the client then leaves closing it to you), or
    let the client make one from ``target`` with extra channel ``options``; ``interceptors``
    (``grpc.UnaryUnaryClientInterceptor`` and friends) wrap either.
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
        options: ChannelOptions = (),
        interceptors: Sequence[Any] = (),
        channel: grpc.Channel | None = None,
    ) -> None:
        check_channel_arguments(channel, target, credentials, options)
        self._owns_channel = channel is None
        if channel is None:
            options = channel_options(max_attempts, extra=options)
            self.channel = sync_channel(target, credentials, options, interceptors)
        else:
            self.channel = (
                grpc.intercept_channel(channel, *interceptors) if interceptors else channel
            )
        self.timeout = timeout
        self.admin_timeout = admin_timeout
        self.metadata = bearer_metadata(token)
        self.router = router_pb2_grpc.RouterStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)

    def __enter__(self) -> BanditClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel if this client made it."""
        if self._owns_channel:
            self.channel.close()

    # -- Router -----------------------------------------------------------------------------

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
        """Ask which arm to serve; credit it later with ``reward(result.decision_id, ...)``."""
        with typed_errors():
            response = self.router.Route(
                requests.route(experiment, unit_id, excluded_arms, context, attributes),
                timeout=timeout or self.timeout,
                metadata=self.metadata,
            )
        return RouteResult.from_pb(response)

    def reward(
        self,
        decision_id: str,
        value: float | None = None,
        *,
        metrics: Mapping[str, float] | None = None,
        timeout: float | None = None,
    ) -> Outcome:
        """Credit ``value`` and/or named ``metrics`` ({"quality": 0.8, "latency_ms": 420}) to
        a decision; ``Outcome.APPLIED``, ``DUPLICATE`` (a retry), ... With an objective, leave
        ``value`` out: the service computes it from the metrics (without one, out means 0)."""
        with typed_errors():
            response = self.router.Reward(
                requests.reward(decision_id, value, metrics),
                timeout=timeout or self.timeout,
                metadata=self.metadata,
            )
        return Outcome.from_pb(response.outcome)

    # -- Admin ------------------------------------------------------------------------------

    def call_admin(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """Any unary Admin RPC by name: ``call_admin("PinArm", admin_pb2.PinArmRequest(...))``."""
        with typed_errors():
            return getattr(self.admin, method)(
                request, timeout=timeout or self.admin_timeout, metadata=self.metadata
            )

    def create_experiment(
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
        """Create from a name and arms (other ``Experiment`` fields as keywords), or from a
        whole ``Experiment`` message."""
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
        response: admin_pb2.CreateExperimentResponse = self.call_admin("CreateExperiment", request)
        return response.experiment

    def get_experiment(self, name: str) -> admin_pb2.GetExperimentResponse:
        """The experiment and its per-arm statistics."""
        response: admin_pb2.GetExperimentResponse = self.call_admin(
            "GetExperiment", admin_pb2.GetExperimentRequest(name=name)
        )
        return response

    def list_all(
        self, method: str, request: Any, items: str, *, limit: int | None = None
    ) -> list[Any]:
        """Every item of a paginated List* call, following ``next_page_token`` (at most
        ``limit`` of them when given): ``items`` names the response's repeated field."""
        found: list[Any] = []
        while True:
            response = self.call_admin(method, request)
            found += getattr(response, items)
            if not response.next_page_token or (limit is not None and len(found) >= limit):
                return found if limit is None else found[:limit]
            request.page_token = response.next_page_token

    def list_experiments(self, *, page_size: int = 0) -> list[experiment_pb2.Experiment]:
        """Every experiment, in name order, fetched ``page_size`` at a time (0: the server's
        default, 100)."""
        request = admin_pb2.ListExperimentsRequest(page_size=page_size)
        return self.list_all("ListExperiments", request, "experiments")

    def update_experiment(
        self,
        experiment: experiment_pb2.Experiment,
        *,
        expected_version: int = 0,
        update_mask: Sequence[str] = (),
        reason: str = "",
    ) -> experiment_pb2.Experiment:
        """Replace the configuration (or only the ``update_mask`` paths); a stale
        ``expected_version`` (0: any) raises ``Aborted``."""
        request = requests.update_experiment(
            experiment, expected_version=expected_version, update_mask=update_mask, reason=reason
        )
        response: admin_pb2.UpdateExperimentResponse = self.call_admin("UpdateExperiment", request)
        return response.experiment

    def delete_experiment(self, name: str, reason: str = "") -> None:
        """Delete the experiment and its statistics."""
        self.call_admin(
            "DeleteExperiment", admin_pb2.DeleteExperimentRequest(name=name, reason=reason)
        )

    def add_arm(
        self,
        experiment: str,
        arm: str,
        *,
        prior_n: float = 0.0,
        prior_sum: float = 0.0,
        prior_sum_sq: float = 0.0,
        reason: str = "",
    ) -> experiment_pb2.Experiment:
        """Add an arm to a running experiment, optionally warm-started by prior statistics."""
        request = requests.add_arm(
            experiment,
            arm,
            prior_n=prior_n,
            prior_sum=prior_sum,
            prior_sum_sq=prior_sum_sq,
            reason=reason,
        )
        response: admin_pb2.AddArmResponse = self.call_admin("AddArm", request)
        return response.experiment

    def remove_arm(
        self, experiment: str, arm: str, *, reason: str = ""
    ) -> experiment_pb2.Experiment:
        """Remove an arm and its statistics."""
        request = admin_pb2.RemoveArmRequest(experiment=experiment, arm=arm, reason=reason)
        response: admin_pb2.RemoveArmResponse = self.call_admin("RemoveArm", request)
        return response.experiment

    def set_arm_state(
        self, experiment: str, arm: str, state: ArmState | str, *, reason: str = ""
    ) -> experiment_pb2.Experiment:
        """Enable (``ArmState.ACTIVE``) or disable (``ArmState.DISABLED``) an arm."""
        request = requests.set_arm_state(experiment, arm, state, reason)
        response: admin_pb2.SetArmStateResponse = self.call_admin("SetArmState", request)
        return response.experiment

    def set_guardrail_override(
        self,
        experiment: str,
        arm: str,
        override: GuardrailOverride | str,
        *,
        reason: str = "",
    ) -> experiment_pb2.Experiment:
        """Hold an arm out of quarantine (``HOLD_ACTIVE``), force it in (``FORCE_QUARANTINE``)
        or give it back to its guardrail rules (``NONE``); the arm's state follows at once and
        the change is audited. An UpdateExperiment of ``arms`` at the version just read,
        repeated if the experiment changed in between."""
        for attempt in range(requests.OVERRIDE_ATTEMPTS):
            current = self.get_experiment(experiment).experiment
            request = requests.guardrail_override(current, arm, override, reason)
            try:
                response: admin_pb2.UpdateExperimentResponse = self.call_admin(
                    "UpdateExperiment", request
                )
            except Aborted:
                if attempt + 1 == requests.OVERRIDE_ATTEMPTS:
                    raise
                continue
            return response.experiment
        raise AssertionError("unreachable")

    def pin_arm(
        self, experiment: str, arm: str, *, unit_id: str = "", ttl: float = 0.0, reason: str = ""
    ) -> experiment_pb2.Experiment:
        """Send all traffic (or one ``unit_id``'s) to ``arm``, for ``ttl`` seconds (0: until
        unpinned)."""
        request = requests.pin_arm(experiment, arm, unit_id=unit_id, ttl=ttl, reason=reason)
        response: admin_pb2.PinArmResponse = self.call_admin("PinArm", request)
        return response.experiment

    def unpin(
        self, experiment: str, *, unit_id: str = "", reason: str = ""
    ) -> experiment_pb2.Experiment:
        """Remove the experiment's pin (or one unit's)."""
        request = admin_pb2.UnpinRequest(experiment=experiment, unit_id=unit_id, reason=reason)
        response: admin_pb2.UnpinResponse = self.call_admin("Unpin", request)
        return response.experiment

    def pause(
        self, experiment: str, *, arm: str = "", reason: str = ""
    ) -> experiment_pb2.Experiment:
        """Route to ``arm`` (default: the experiment's default) without learning."""
        request = admin_pb2.PauseRequest(experiment=experiment, arm=arm, reason=reason)
        response: admin_pb2.PauseResponse = self.call_admin("Pause", request)
        return response.experiment

    def resume(self, experiment: str, *, reason: str = "") -> experiment_pb2.Experiment:
        """Resume learning after ``pause``."""
        request = admin_pb2.ResumeRequest(experiment=experiment, reason=reason)
        response: admin_pb2.ResumeResponse = self.call_admin("Resume", request)
        return response.experiment

    def reset(self, experiment: str, *, reason: str = "") -> admin_pb2.Snapshot:
        """Return the statistics to the prior; the snapshot of what they were is returned."""
        request = admin_pb2.ResetRequest(experiment=experiment, reason=reason)
        response: admin_pb2.ResetResponse = self.call_admin("Reset", request)
        return response.snapshot

    def list_snapshots(self, experiment: str) -> list[admin_pb2.Snapshot]:
        """Every snapshot the experiment keeps, newest first."""
        request = admin_pb2.ListSnapshotsRequest(experiment=experiment)
        return self.list_all("ListSnapshots", request, "snapshots")

    def get_report(self, experiment: str, *, window: float = 3600.0) -> admin_pb2.GetReportResponse:
        """Per-arm posterior, P(best), expected loss and recent share over ``window`` s."""
        response: admin_pb2.GetReportResponse = self.call_admin(
            "GetReport", requests.get_report(experiment, window)
        )
        return response

    def list_audit(self, experiment: str, *, limit: int | None = 100) -> list[admin_pb2.AuditEntry]:
        """The newest ``limit`` audit entries (None: all the log keeps), newest first."""
        request = requests.list_audit(experiment, limit)
        return self.list_all("ListAudit", request, "entries", limit=limit)

    def export_decisions(
        self, experiment: str, limit: int = 0, since: float = 0.0
    ) -> Iterator[admin_pb2.DecisionRecord]:
        """Stream the decision log (``limit`` 0: every record kept; ``since``: unix seconds,
        0 for the whole retained log)."""
        with typed_errors():
            stream = self.admin.ExportDecisions(
                requests.export_decisions(experiment, limit, since),
                timeout=self.admin_timeout * 6,
                metadata=self.metadata,
            )
            for response in stream:
                yield response.record
