"""Operator actions on experiments: each validated, applied atomically and audited.

Every change goes through ``Store.update_experiment`` (compare-and-set on the config version,
then a change notice so every replica refreshes at once), and the same script appends it to
the experiment's audit log with who did it, when, with which arguments and why: a change is
never applied unaudited. Plain Python, callable from tests without gRPC; the Admin servicer
only translates messages.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bandit_router.errors import (
    ErrorReason,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Resource,
)
from bandit_router.model.convert import keep_guardrail_state
from bandit_router.model.experiments import (
    MAX_REASON_LENGTH,
    Arm,
    ArmState,
    Commit,
    Experiment,
    Pin,
    check_name,
)
from bandit_router.model.guardrails import Override
from bandit_router.operations.paging import Listing, audit_page_size, page_size
from bandit_router.store.redis_store import AuditEntry, AuditOf, ExperimentState, Store

log = logging.getLogger(__name__)

#: A Redis stream entry id (the audit log's keys): milliseconds-sequence.
STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def check_reason(reason: str) -> str:
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgument(f"at most {MAX_REASON_LENGTH} characters", "reason")
    return reason


def _require_arm(experiment: Experiment, arm: str, field: str = "arm") -> Arm:
    check_name(arm, field)
    found = experiment.arm(arm)
    if found is None:
        raise NotFound(
            f"experiment {experiment.name!r} has no arm {arm!r}",
            field,
            reason=ErrorReason.ARM_NOT_FOUND,
            resource=Resource.arm(experiment.name, arm),
        )
    return found


def override_changes(before: Experiment, after: Experiment) -> dict[str, str]:
    """Arm -> new override, for each arm of ``after`` whose guardrail override differs from
    ``before``'s (a new arm counts when it has one)."""
    old = {arm.name: arm.override for arm in before.arms}
    return {
        arm.name: arm.override.value
        for arm in after.arms
        if arm.override is not old.get(arm.name, Override.NONE)
    }


class AdminOperations:
    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _audited(principal: str, action: str, arguments: Mapping[str, Any], reason: str) -> AuditOf:
        """The audit entry of an action, given the experiment as the action leaves it (its
        version goes into the arguments; read then, since a change may add to them)."""

        def entries(experiment: Experiment) -> list[AuditEntry]:
            versioned = {**arguments, "version": experiment.version}
            return [AuditEntry(principal, action, versioned, reason)]

        return entries

    @staticmethod
    def _log_action(name: str, principal: str, action: str, reason: str) -> None:
        log.info(
            "operator action %s on %s by %s",
            action,
            name,
            principal,
            extra={"experiment": name, "principal": principal, "action": action, "reason": reason},
        )

    async def _change(
        self,
        name: str,
        principal: str,
        action: str,
        arguments: Mapping[str, Any],
        reason: str,
        change: Callable[[Experiment], Experiment],
        *,
        expected_version: int = 0,
        reset_header: Mapping[str, Any] | None = None,
    ) -> Experiment:
        check_name(name, "experiment")
        check_reason(reason)
        _, after = await self.store.update_experiment(
            name,
            change,
            expected_version=expected_version,
            reset_header=reset_header,
            audit=self._audited(principal, action, arguments, reason),
        )
        self._log_action(name, principal, action, reason)
        return after

    # -- CRUD ------------------------------------------------------------------------------

    async def create(self, experiment: Experiment, principal: str, reason: str = "") -> Experiment:
        check_reason(reason)
        # Guardrail state is the service's: a new arm starts active with no history, whatever
        # the request (or a file that `get` wrote) says; only an override quarantines it.
        # Validated first, so that a bad rule or override is refused naming it.
        experiment = experiment.validated()
        experiment = keep_guardrail_state(experiment.with_changes(arms=()), experiment)

        def audit(created: Experiment) -> list[AuditEntry]:
            return [AuditEntry(principal, "create", created.to_json_dict(), reason)]

        created = await self.store.create_experiment(experiment.validated(), audit)
        self._log_action(created.name, principal, "create", reason)
        return created

    async def get(self, name: str) -> ExperimentState:
        check_name(name, "name")
        return await self.store.read_state(name)

    async def list_all(self) -> list[Experiment]:
        return await self.store.list_experiments()

    async def list_page(self, size: int, token: str) -> tuple[list[Experiment], str]:
        """One page of experiments in name order, and the next page's token ("" at the end)."""
        listing = Listing("ListExperiments")
        count, after = page_size(size), listing.cursor(token)
        names = [n for n in await self.store.list_names() if after is None or n > after]
        page = await self.store.read_states(names[:count])
        # A name deleted between the two reads is skipped; the cursor still moves past it.
        experiments = [page[name].experiment for name in names[:count] if name in page]
        more = len(names) > count
        return experiments, listing.token(names[count - 1]) if more else ""

    async def update(
        self,
        name: str,
        build: Callable[[Experiment], Experiment],
        principal: str,
        reason: str = "",
        expected_version: int = 0,
        fields: list[str] | None = None,
        *,
        reset_statistics: bool = False,
    ) -> Experiment:
        """Apply ``build`` to the config. A change of what the statistics mean
        (context_features, or the kind of policy) needs ``reset_statistics``: the config
        and reset statistics are then written together, the old ones kept as a snapshot."""
        arguments: dict[str, Any] = {"fields": fields or ["*"]}
        header = None
        if reset_statistics:
            header = self._snapshot_header(principal, reason)
            arguments["snapshot"] = header["id"]

        def build_noting_overrides(current: Experiment) -> Experiment:
            # An operator's guardrail override travels as an update of the arms (no RPC of
            # its own): the audit entry names each arm whose override changed, and to what.
            after = build(current)
            changed = override_changes(current, after)
            if changed:
                arguments["guardrail_overrides"] = changed
            else:
                arguments.pop("guardrail_overrides", None)
            return after

        return await self._change(
            name,
            principal,
            "update",
            arguments,
            reason,
            build_noting_overrides,
            expected_version=expected_version,
            reset_header=header,
        )

    async def delete(self, name: str, principal: str, reason: str = "") -> None:
        check_name(name, "name")
        check_reason(reason)
        await self.store.delete_experiment(name, self._audited(principal, "delete", {}, reason))
        self._log_action(name, principal, "delete", reason)

    # -- arms ------------------------------------------------------------------------------

    async def add_arm(self, name: str, arm: Arm, principal: str, reason: str = "") -> Experiment:
        def change(experiment: Experiment) -> Experiment:
            if experiment.arm(arm.name) is not None:
                raise InvalidArgument(
                    f"arm {arm.name!r} already exists",
                    "arm.name",
                    reason=ErrorReason.DUPLICATE_ARM,
                )
            # A new arm reopens a committed experiment: the winner was only the best of the
            # arms it was compared with (the audit entry records the commit it cleared).
            if experiment.commit.arm:
                arguments["reopened_commit"] = experiment.commit.arm
            added = experiment.with_changes(arms=(*experiment.arms, arm), commit=Commit())
            return keep_guardrail_state(experiment, added)  # a new arm starts active

        arguments: dict[str, Any] = {
            "arm": arm.name,
            "prior_n": arm.prior_n,
            "prior_sum": arm.prior_sum,
        }
        return await self._change(name, principal, "add_arm", arguments, reason, change)

    async def remove_arm(self, name: str, arm: str, principal: str, reason: str = "") -> Experiment:
        def change(experiment: Experiment) -> Experiment:
            _require_arm(experiment, arm)
            remaining = tuple(a for a in experiment.arms if a.name != arm)
            if not any(a.enabled for a in remaining):
                raise FailedPrecondition(
                    "cannot remove the last active arm", "arm", reason=ErrorReason.LAST_ACTIVE_ARM
                )
            pin = experiment.pin
            units = {unit: a for unit, a in pin.units.items() if a != arm}
            return experiment.with_changes(
                arms=remaining,
                pin=Pin("" if pin.arm == arm else pin.arm, pin.reason, pin.expires_at, units),
                pause_arm="" if experiment.pause_arm == arm else experiment.pause_arm,
                holdout_control_arm=(
                    "" if experiment.holdout_control_arm == arm else experiment.holdout_control_arm
                ),
            )

        return await self._change(name, principal, "remove_arm", {"arm": arm}, reason, change)

    async def set_arm_state(
        self, name: str, arm: str, state: ArmState, principal: str, reason: str = ""
    ) -> Experiment:
        def change(experiment: Experiment) -> Experiment:
            found = _require_arm(experiment, arm)
            if found.state is ArmState.QUARANTINED and state is ArmState.ACTIVE:
                raise FailedPrecondition(
                    f"arm {arm!r} is quarantined by a guardrail ({found.guardrail.summary}); "
                    "to release it, hold it active: bandit-router guardrail hold",
                    "arm",
                    reason=ErrorReason.ARM_QUARANTINED,
                )
            changed = dataclasses.replace(found, state=state)
            arguments.pop("cleared_override", None)
            if state is ArmState.DISABLED and found.override is not Override.NONE:
                # The kill switch always works: a disabled arm has no guardrails to override
                # (validation refuses one), so disabling clears it, and the audit says so.
                changed = dataclasses.replace(changed, override=Override.NONE)
                arguments["cleared_override"] = found.override.value
            arms = tuple(changed if a.name == arm else a for a in experiment.arms)
            if not any(a.enabled for a in arms):
                raise FailedPrecondition(
                    "cannot disable the last active arm", "arm", reason=ErrorReason.LAST_ACTIVE_ARM
                )
            return experiment.with_changes(arms=arms)

        action = "enable_arm" if state is ArmState.ACTIVE else "disable_arm"
        arguments: dict[str, Any] = {"arm": arm}
        return await self._change(name, principal, action, arguments, reason, change)

    async def set_guardrail_override(
        self, name: str, arm: str, override: Override, principal: str, reason: str = ""
    ) -> Experiment:
        """Hold an arm out of quarantine, force it in, or give it back to the rules. The arm's
        state follows at once (``convert.keep_guardrail_state``) and a new statistics epoch
        starts, so the rules judge it afresh once the override is cleared."""

        def change(experiment: Experiment) -> Experiment:
            _require_arm(experiment, arm)
            arms = tuple(
                dataclasses.replace(a, override=override) if a.name == arm else a
                for a in experiment.arms
            )
            return keep_guardrail_state(experiment, experiment.with_changes(arms=arms))

        arguments = {"arm": arm, "override": override.value}
        return await self._change(name, principal, "guardrail_override", arguments, reason, change)

    # -- pins, pause -----------------------------------------------------------------------

    async def pin(
        self,
        name: str,
        arm: str,
        principal: str,
        *,
        unit_id: str = "",
        ttl: float = 0.0,
        reason: str = "",
    ) -> Experiment:
        if ttl < 0:
            raise InvalidArgument("must not be negative", "ttl")
        if len(unit_id) > 256:
            raise InvalidArgument("longer than 256 characters", "unit_id")

        def change(experiment: Experiment) -> Experiment:
            found = _require_arm(experiment, arm)
            if not found.active:
                raise FailedPrecondition(
                    f"arm {arm!r} is disabled; enable it before pinning",
                    "arm",
                    reason=ErrorReason.ARM_DISABLED,
                )
            pin = experiment.pin
            if unit_id:
                return experiment.with_changes(
                    pin=dataclasses.replace(pin, units={**pin.units, unit_id: arm})
                )
            expires = time.time() + ttl if ttl else 0.0
            return experiment.with_changes(pin=Pin(arm, reason, expires, dict(pin.units)))

        arguments = {"arm": arm, "unit_id": unit_id, "ttl": ttl}
        return await self._change(name, principal, "pin", arguments, reason, change)

    async def unpin(
        self, name: str, principal: str, *, unit_id: str = "", reason: str = ""
    ) -> Experiment:
        def change(experiment: Experiment) -> Experiment:
            pin = experiment.pin
            if unit_id:
                if unit_id not in pin.units:
                    raise NotFound(
                        f"unit {unit_id!r} is not pinned",
                        "unit_id",
                        reason=ErrorReason.PIN_NOT_FOUND,
                        resource=Resource.pin(experiment.name, unit_id),
                    )
                units = {u: a for u, a in pin.units.items() if u != unit_id}
                return experiment.with_changes(pin=dataclasses.replace(pin, units=units))
            return experiment.with_changes(pin=Pin(units=dict(pin.units)))

        return await self._change(name, principal, "unpin", {"unit_id": unit_id}, reason, change)

    async def pause(
        self, name: str, principal: str, *, arm: str = "", reason: str = ""
    ) -> Experiment:
        def change(experiment: Experiment) -> Experiment:
            if arm:
                _require_arm(experiment, arm)
            return experiment.with_changes(paused=True, pause_arm=arm or experiment.pause_arm)

        return await self._change(name, principal, "pause", {"arm": arm}, reason, change)

    async def resume(self, name: str, principal: str, *, reason: str = "") -> Experiment:
        return await self._change(
            name, principal, "resume", {}, reason, lambda e: e.with_changes(paused=False)
        )

    # -- reset and snapshots ---------------------------------------------------------------

    async def reset(self, name: str, principal: str, *, reason: str = "") -> dict[str, Any]:
        check_name(name, "experiment")
        check_reason(reason)
        experiment = await self.store.require_experiment(name)
        header = self._snapshot_header(principal, reason)
        await self.store.reset_statistics(
            experiment,
            header,
            self._audited(principal, "reset", {"snapshot": header["id"]}, reason),
        )
        self._log_action(name, principal, "reset", reason)
        snapshots = await self.store.list_snapshots(name)
        return snapshots[0] if snapshots else header

    @staticmethod
    def _snapshot_header(principal: str, reason: str) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex[:12],
            "taken_at": time.time(),
            "reason": reason,
            "principal": principal,
        }

    async def snapshots(
        self, name: str, size: int = 0, token: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of snapshots, newest first, and the next page's token ("" at the end)."""
        check_name(name, "experiment")
        listing = Listing("ListSnapshots", name)
        count, after = page_size(size), listing.cursor(token)
        await self.store.require_experiment(name)
        snapshots = await self.store.list_snapshots(name)
        if after is not None:
            ids = [str(s.get("id", "")) for s in snapshots]
            # Gone from the capped list: so is everything older, the rest of this listing.
            snapshots = snapshots[ids.index(after) + 1 :] if after in ids else []
        more = len(snapshots) > count
        return snapshots[:count], listing.token(str(snapshots[count - 1]["id"])) if more else ""

    async def audit(
        self, name: str, limit: int, size: int = 0, token: str = ""
    ) -> tuple[list[tuple[str, dict[str, str]]], str]:
        """One page of audit entries, newest first, and the next page's token."""
        check_name(name, "experiment")
        listing = Listing("ListAudit", name)
        count, before = audit_page_size(size, limit), listing.cursor(token, STREAM_ID)
        entries = await self.store.list_audit(name, count + 1, before=before)
        more = len(entries) > count
        return entries[:count], listing.token(entries[count - 1][0]) if more else ""
