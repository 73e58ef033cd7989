"""The Reward path: verify the signed decision id, validate the value, commit exactly once.

Everything that can be refused is refused before the store is touched (malformed, forged or
expired ids, NaN or out-of-range values, deleted experiments), so a refusal changes nothing.
The Lua script then decides, atomically, between applied, duplicate and late; the caller is
answered only after Redis committed (group commit batches concurrent rewards, see batching.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from bandit_router.errors import ErrorReason, InvalidArgument, NotFound, Resource
from bandit_router.model.experiments import Experiment
from bandit_router.model.metrics import check_reward_metrics, encode_metrics
from bandit_router.model.observations import detail
from bandit_router.reward.batching import GroupCommit
from bandit_router.route.cache import ExperimentCache
from bandit_router.route.tokens import DecisionSigner
from bandit_router.store.errors import unavailable
from bandit_router.store.redis_store import RewardCommand, Store

if TYPE_CHECKING:
    from bandit_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

MARKER_MARGIN_MS = 3600 * 1000


class RewardOutcome(StrEnum):
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"
    LATE_IGNORED = "LATE_IGNORED"
    LATE_APPLIED = "LATE_APPLIED"
    RECORDED = "RECORDED"


_SCRIPT_OUTCOMES = {
    "applied": RewardOutcome.APPLIED,
    "duplicate": RewardOutcome.DUPLICATE,
    "late_ignored": RewardOutcome.LATE_IGNORED,
    "late_applied": RewardOutcome.LATE_APPLIED,
    "recorded": RewardOutcome.RECORDED,
}


def _experiment_gone(experiment: str) -> NotFound:
    return NotFound(
        f"experiment {experiment!r} no longer exists",
        "decision_id",
        reason=ErrorReason.EXPERIMENT_NOT_FOUND,
        resource=Resource.experiment(experiment),
    )


def _arm_gone(experiment: str, arm: str) -> NotFound:
    return NotFound(
        f"arm {arm!r} was removed from the experiment",
        "decision_id",
        reason=ErrorReason.ARM_NOT_FOUND,
        resource=Resource.arm(experiment, arm),
    )


def _stale(experiment: str) -> NotFound:
    return NotFound(
        f"the decision was made before experiment {experiment!r} changed its context_features "
        "or kind of policy (with a reset); its features no longer fit the statistics",
        "decision_id",
        reason=ErrorReason.DECISION_STALE,
        resource=Resource.experiment(experiment),
    )


def metric_reward(
    experiment: Experiment,
    arm: str,
    value: float,
    metrics: Mapping[str, float] | None,
    value_set: bool = False,
    decided_at: float | None = None,
) -> tuple[float, str]:
    """(learning reward, encoded metrics) of a reward that carries metrics or whose experiment
    has an objective; InvalidArgument naming ``metrics[name]`` or ``value``, before any write.

    With an objective the learning reward is its scalarisation of the metrics; ``value`` is
    then unset or must equal it (relative tolerance 1e-9: a client may sum in another
    order). Without one, metrics are recorded and ``value`` is learned as before. What the
    metrics feed besides (guardrail windows, the quantile sketch) follows after a '#'
    (``model.observations``).
    """
    observed = metrics or {}
    check_reward_metrics(experiment.metric_specs, observed)
    objective = experiment.objective
    if objective is not None:
        for name in objective.weights:
            if name not in observed:
                raise InvalidArgument("required by the experiment's objective", f"metrics[{name}]")
        computed = objective.value(observed)
        # A client that tracks presence says whether it set the value; one built before
        # (or a plain 0) sends nothing, which reads as unset.
        given = value_set or value != 0.0
        if given and not math.isclose(value, computed, rel_tol=1e-9, abs_tol=1e-12):
            raise InvalidArgument(
                f"{value!r} differs from the objective's {computed!r}: leave value unset "
                "or send the objective's value",
                "value",
            )
        value = computed
    encoded = encode_metrics(observed)
    extra = detail(experiment, arm, observed, time.time(), decided_at)
    return value, f"{encoded}#{extra}" if extra else encoded


class RewardProcessor:
    def __init__(
        self,
        store: Store,
        cache: ExperimentCache,
        signer: DecisionSigner,
        *,
        metrics: Metrics | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        linger: float = 0.002,
    ) -> None:
        self.store = store
        self.cache = cache
        self.signer = signer
        self.metrics = metrics
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._commit: GroupCommit[RewardCommand, str] = GroupCommit(self._flush, linger=linger)

    async def _flush(self, commands: Sequence[RewardCommand]) -> Sequence[str | BaseException]:
        # The WAIT runs inside the store's pipeline, on the connection (and in a cluster
        # the master) that ran the scripts: a WAIT sent on another connection counts the
        # replicas of that connection's writes, not necessarily of these.
        return await self.store.apply_rewards(
            commands, wait_replicas=self.wait_replicas, wait_timeout_ms=self.wait_timeout_ms
        )

    async def _contextual(self, command: RewardCommand, features: str) -> RewardCommand:
        """``command`` with what the contextual script needs: the features its decision id
        carries and the kind, feature space and dimension of the experiment's statistics.

        A decision made in another feature space than this replica's copy is refused here
        (the store refuses it atomically too, as 'stale'), after one refresh: the copy may
        be the one that is behind, just after a change with a reset.
        """
        entry = self.cache.get(command.experiment)
        contextual = entry.contextual if entry is not None else None
        if contextual is None or not features.startswith(f"{contextual.space_id}/"):
            entry = await self.cache.refresh_one(command.experiment)
            contextual = entry.contextual if entry is not None else None
            if contextual is None or not features.startswith(f"{contextual.space_id}/"):
                raise _stale(command.experiment)
        return command._replace(
            features=features,
            kind=contextual.kind,
            space=contextual.space_id,
            dim=contextual.space.dim,
        )

    async def reward(
        self,
        decision_id: str,
        value: float,
        timeout: float | None,
        metrics: Mapping[str, float] | None = None,
        *,
        value_set: bool = False,
    ) -> RewardOutcome:
        decision = self.signer.verify(decision_id)
        entry = self.cache.get(decision.experiment) or await self.cache.refresh_one(
            decision.experiment
        )
        if entry is None:
            raise _experiment_gone(decision.experiment)
        experiment = entry.experiment
        if experiment.incarnation != decision.incarnation:
            raise NotFound(
                f"experiment {decision.experiment!r} was deleted and re-created since",
                "decision_id",
                reason=ErrorReason.DECISION_NOT_FOUND,
                resource=Resource.decision(decision_id),
            )
        now_ms = int(time.time() * 1000)
        expires_ms = decision.deadline_ms + int(experiment.late_reward_grace * 1000)
        if now_ms > expires_ms:
            expired = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_ms / 1000))
            raise NotFound(
                f"decision expired at {expired} (reward window plus late grace)",
                "decision_id",
                reason=ErrorReason.DECISION_EXPIRED,
                resource=Resource.decision(decision_id),
            )
        if not math.isfinite(value):
            raise InvalidArgument(f"must be a finite number, got {value!r}", "value")
        encoded = ""
        if metrics or experiment.objective is not None:  # plain rewards skip this entirely
            value, encoded = metric_reward(
                experiment, decision.arm, value, metrics, value_set, decision.issued_ms / 1000.0
            )
        low, high = entry.reward_bounds
        if not low <= value <= high:
            raise InvalidArgument(
                f"{value!r} is outside the experiment's range [{low:g}, {high:g}]", "value"
            )
        if decision.arm not in entry.arm_index:
            raise _arm_gone(decision.experiment, decision.arm)
        command = RewardCommand(
            experiment=decision.experiment,
            incarnation=decision.incarnation,
            nonce=decision.nonce,
            arm=decision.arm,
            value=value,
            deadline_ms=decision.deadline_ms,
            late_rule=experiment.late_rewards.value,
            learn=decision.learn,
            marker_ttl_ms=max(expires_ms - now_ms, 0) + MARKER_MARGIN_MS,
            gamma=entry.policy.gamma,
            metrics=encoded,
        )
        if entry.contextual is not None or decision.features:
            command = await self._contextual(command, decision.features)
        started = time.perf_counter()
        try:
            result = await self._commit.submit(command, timeout)
        except Exception as error:
            if self.metrics is not None:
                self.metrics.observe_store("reward", time.perf_counter() - started, ok=False)
            mapped = unavailable(error, "Reward")
            if mapped is error:
                raise
            raise mapped from error
        if self.metrics is not None:
            self.metrics.observe_store("reward", time.perf_counter() - started, ok=True)
        if result == "gone":
            raise _experiment_gone(decision.experiment)
        if result == "invalid":
            raise InvalidArgument(f"{value!r} is not a reward the store accepts", "value")
        if result == "stale":
            raise _stale(decision.experiment)
        if result == "no_arm":
            raise _arm_gone(decision.experiment, decision.arm)
        outcome = _SCRIPT_OUTCOMES[result]
        if self.metrics is not None:
            self.metrics.observe_reward(decision.experiment, decision.arm, outcome.value, value)
        return outcome
