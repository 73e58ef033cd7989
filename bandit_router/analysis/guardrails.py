"""Watches every guarded experiment's arms and quarantines or releases them.

Every replica runs a monitor. Each tick (``interval``, 0.25 s by default) it reads the
guardrail observation hashes of the experiments it serves in one round trip, sums each arm's
current epoch over each rule's window (``model.observations`` says how they are written),
and asks ``policies.guardrails`` for the arm's next state. A transition is a conditional
update of the experiment (``expected_version``), so when several replicas reach the same
verdict from the same shared data, the first writes it and the others' attempts are refused
as stale. The update starts the arm's next epoch and publishes a change notice, so every
replica routes by the new state within a refresh; it is audited by the ``guardrail`` agent
with the rule, the statistic, the threshold and the samples, and counted in metrics.

The monitor also forgets what no rule can read any more: slots of epochs that ended, slots
older than the longest window, rules and arms that no longer exist.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bandit_router.errors import Aborted
from bandit_router.model.experiments import ArmState, Experiment
from bandit_router.model.guardrails import GUARDRAIL_AGENT, ArmGuardrail, Override, slot_widths
from bandit_router.route.cache import ExperimentCache
from bandit_router.store.errors import STORE_ERRORS
from bandit_router.store.redis_store import AuditEntry, Store
from bandit_router.tasks import cancel_and_wait
from policies import guardrails as pure

if TYPE_CHECKING:
    from bandit_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

_STATE = {ArmState.ACTIVE: pure.ArmState.ACTIVE, ArmState.QUARANTINED: pure.ArmState.QUARANTINED}
_OVERRIDE = {
    Override.NONE: pure.Override.NONE,
    Override.HOLD_ACTIVE: pure.Override.HOLD,
    Override.FORCE_QUARANTINE: pure.Override.FORCE,
}


@dataclass(frozen=True)
class ArmWindows:
    """One arm's (count, sum of y) per rule, over each rule's window of the current epoch."""

    n: tuple[float, ...]
    s: tuple[float, ...]


def windows(
    experiment: Experiment, guard: Mapping[str, str], now: float
) -> tuple[dict[str, ArmWindows], list[str]]:
    """Each arm's windowed data, and the fields no rule will read again (to delete).

    Fields are ``<arm>:<epoch>:<slot>:<rule key>:n|s``, the slot in its key's width
    (``slot_widths``). A slot counts for a rule while it overlaps the rule's window, and only
    in the arm's current epoch; an older epoch, a slot past the longest window of its key,
    an unknown arm or rule is stale. A newer epoch than this replica's copy of the config is
    left alone: the copy is behind.
    """
    rules = experiment.guardrails
    widths = slot_widths(rules)
    epochs = {arm.name: arm.guardrail.epoch for arm in experiment.arms}
    keys: dict[str, list[int]] = {}
    longest: dict[str, float] = {}
    for index, rule in enumerate(rules):
        keys.setdefault(rule.key, []).append(index)
        longest[rule.key] = max(longest.get(rule.key, 0.0), rule.window)
    n = {arm: [0.0] * len(rules) for arm in epochs}
    s = {arm: [0.0] * len(rules) for arm in epochs}
    stale: list[str] = []
    for field, raw in guard.items():
        parts = field.split(":")
        if len(parts) != 5:
            stale.append(field)
            continue
        arm, epoch_s, slot_s, key, which = parts
        try:
            epoch, slot, value = int(epoch_s), int(slot_s), float(raw)
        except ValueError:
            stale.append(field)
            continue
        current = epochs.get(arm)
        if current is None or key not in keys or epoch < current:
            stale.append(field)
            continue
        width = widths[key]
        if slot + width < now - longest[key]:
            stale.append(field)
            continue
        if epoch > current:
            continue
        target = n if which == "n" else s
        for index in keys[key]:
            if pure.window_reads(slot, width, now, rules[index].window):
                target[arm][index] += value
    return {arm: ArmWindows(tuple(n[arm]), tuple(s[arm])) for arm in epochs}, stale


def describe(transition: pure.Transition, experiment: Experiment) -> str:
    """The transition in words, for the audit log, the arm's status and the report."""
    if transition.cause == "override":
        return "override"
    parts = []
    for reading in transition.readings:
        rule = experiment.guardrails[reading.rule]
        parts.append(
            f"{rule.describe()} {reading.verdict}: {_value_words(rule.statistic.value, reading)} "
            f"over {reading.samples} rewards, confidence {rule.confidence:g}"
        )
    return "; ".join(parts)


def _value_words(statistic: str, reading: pure.RuleReading) -> str:
    if statistic == "quantile":
        side = "above" if reading.bound == "max" else "below"
        return f"{reading.value:.3%} of values {side} {reading.threshold:g}"
    return f"{statistic} {reading.value:.4g}"


class GuardrailMonitor:
    def __init__(
        self,
        store: Store,
        cache: ExperimentCache,
        *,
        interval: float = 0.25,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.interval = interval
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def check_once(self, now: float | None = None) -> int:
        """One pass over every guarded experiment; returns the transitions written."""
        now = time.time() if now is None else now
        experiments = [entry.experiment for entry in self.cache.entries()]
        self._export_states(experiments)
        guarded = [experiment for experiment in experiments if experiment.guardrails]
        if not guarded:
            return 0
        hashes = await self.store.read_guard([e.name for e in guarded])
        written = 0
        for experiment in guarded:
            data, stale = windows(experiment, hashes.get(experiment.name, {}), now)
            if stale:
                await self.store.drop_guard_fields(experiment.name, stale)
            written += await self._advance(experiment, data, now)
        return written

    def _export_states(self, experiments: Sequence[Experiment]) -> None:
        if self.metrics is None:
            return
        for experiment in experiments:
            for arm in experiment.arms:
                self.metrics.set_arm_quarantined(
                    experiment.name, arm.name, arm.state is ArmState.QUARANTINED
                )

    async def _advance(
        self, experiment: Experiment, data: Mapping[str, ArmWindows], now: float
    ) -> int:
        rules = experiment.compiled_guardrails
        changes: dict[str, tuple[pure.Transition, str]] = {}
        for arm in experiment.arms:
            if arm.state is ArmState.DISABLED:
                continue
            window = data[arm.name]
            transition = rules.next_state(
                _STATE[arm.state],
                frozenset(arm.guardrail.tripped_rules),
                _OVERRIDE[arm.override],
                window.n,
                window.s,
            )
            if transition is not None and transition.cause != "override":
                changes[arm.name] = (transition, describe(transition, experiment))
        if not changes:
            return 0
        return await self._write(experiment, changes, now)

    async def _write(
        self,
        experiment: Experiment,
        changes: Mapping[str, tuple[pure.Transition, str]],
        now: float,
    ) -> int:
        def change(current: Experiment) -> Experiment:
            arms = []
            for arm in current.arms:
                found = changes.get(arm.name)
                if found is None:
                    arms.append(arm)
                    continue
                transition, summary = found
                state = (
                    ArmState.QUARANTINED
                    if transition.state is pure.ArmState.QUARANTINED
                    else ArmState.ACTIVE
                )
                status = ArmGuardrail(
                    since=now,
                    tripped_rules=tuple(sorted(transition.tripped)),
                    summary=summary,
                    epoch=arm.guardrail.epoch + 1,
                )
                arms.append(replace(arm, state=state, guardrail=status))
            return current.with_changes(arms=tuple(arms))

        def audit(after: Experiment) -> list[AuditEntry]:
            entries = []
            for arm, (transition, summary) in changes.items():
                readings = [
                    {
                        "rule": reading.rule,
                        "metric": reading.metric,
                        "statistic": reading.statistic,
                        "value": None if math.isnan(reading.value) else reading.value,
                        "threshold": reading.threshold,
                        "bound": reading.bound,
                        "samples": reading.samples,
                    }
                    for reading in transition.readings
                ]
                arguments = {"arm": arm, "rules": readings, "version": after.version}
                entries.append(AuditEntry(GUARDRAIL_AGENT, _action(transition), arguments, summary))
            return entries

        try:
            # Conditional on the version the verdicts were reached from: a replica that saw
            # an older config, or lost the race to another replica, writes nothing. The
            # transitions and their audit entries are written by one script.
            await self.store.update_experiment(
                experiment.name, change, expected_version=experiment.version, audit=audit
            )
        except Aborted:
            return 0
        except STORE_ERRORS as error:
            log.warning("could not write guardrail transitions of %s (%s)", experiment.name, error)
            return 0
        for arm, (transition, summary) in changes.items():
            action = _action(transition)
            if self.metrics is not None:
                self.metrics.count_guardrail_transition(
                    experiment.name, arm, "quarantined" if action == "quarantine" else "active"
                )
            log.warning(
                "guardrail %s",
                action,
                extra={"experiment": experiment.name, "arm": arm, "summary": summary},
            )
        return len(changes)

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except STORE_ERRORS as error:
                log.warning("guardrail check failed: %s; will retry", error)
            except Exception:
                log.exception("guardrail check failed unexpectedly")

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="guardrail-monitor")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait([self._task])


def _action(transition: pure.Transition) -> str:
    """The audit action of a guardrail transition."""
    return "quarantine" if transition.state is pure.ArmState.QUARANTINED else "release"
