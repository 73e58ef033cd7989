"""Checks every experiment's stopping rule at each cache refresh, and commits when it holds.

The rule (``policies.stopping``) is anytime-valid, so checking it after every refresh (every
100 ms by default) costs no error: what it declares holds with probability 1 - delta however
often it looked. Every replica checks; the first to commit wins the conditional update
(``expected_version``) and the others' attempts are refused as stale and dropped. The commit
is an audited change of the experiment by the ``stopping-rule`` agent, reversible by an
operator (clear ``commit``; ``bandit-router reopen``).

Data only: arms' warm-start priors (``prior_n``, ``prior_sum``) are in the stored statistics
but are not observations, so they are taken out before the rule sees the counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bandit_router.errors import Aborted
from bandit_router.model.experiments import STOPPING_RULE_AGENT, Commit, Experiment
from bandit_router.route.cache import CachedExperiment
from bandit_router.store.errors import STORE_ERRORS
from bandit_router.store.redis_store import AuditEntry, Store
from policies import Stats
from policies.stopping import Verdict

if TYPE_CHECKING:
    from bandit_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoppingStatus:
    """The last verdict this replica computed for one experiment."""

    version: int
    arms: tuple[str, ...]
    active: tuple[bool, ...]
    verdict: Verdict
    winner: str  # '' while the rule does not hold
    samples_needed: int  # rewards the most-starved active arm lacks before any verdict

    def guarantee(self, experiment: Experiment) -> str:
        """The winner's guarantee in words (the report and the commit's summary)."""
        rule = experiment.stopping
        if rule is None or not self.winner:
            return ""
        within = f"within {rule.epsilon:g} of" if rule.epsilon else "at least"
        return (
            f"{self.winner}'s mean is {within} every other active arm's with probability >= "
            f"{1 - rule.delta:g}, valid under continuous monitoring (anytime-valid stopping "
            f"rule, delta {rule.delta:g}, epsilon {rule.epsilon:g})"
        )


def data_stats(experiment: Experiment, stats: Stats) -> Stats:
    """Stored statistics without the arms' warm-start pseudo-observations."""
    arms = experiment.arms
    n = np.asarray(stats.n, dtype=np.float64) - [a.prior_n for a in arms]
    total = np.asarray(stats.total, dtype=np.float64) - [a.prior_sum for a in arms]
    total_sq = np.asarray(stats.total_sq, dtype=np.float64) - [a.prior_sum_sq for a in arms]
    return Stats(np.maximum(n, 0.0), total, np.maximum(total_sq, 0.0))


def stopping_status(experiment: Experiment, stats: Stats) -> StoppingStatus | None:
    """The rule applied to an experiment's statistics; None without a rule."""
    rule = experiment.stopping_rule()
    if rule is None:
        return None
    active = tuple(arm.active for arm in experiment.arms)
    data = data_stats(experiment, stats)
    verdict = rule.verdict(data, np.array(active, dtype=bool))
    index = int(verdict.winner)
    winner = experiment.arm_names[index] if index >= 0 else ""
    needed = max(
        (rule.min_samples - n for n, on in zip(data.n, active, strict=True) if on), default=0.0
    )
    return StoppingStatus(
        experiment.version, experiment.arm_names, active, verdict, winner, int(max(needed, 0.0))
    )


class StoppingMonitor:
    def __init__(self, store: Store, metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self._status: dict[str, StoppingStatus] = {}
        self._committing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def status(self, experiment: str) -> StoppingStatus | None:
        return self._status.get(experiment)

    def forget(self, experiment: str) -> None:
        self._status.pop(experiment, None)

    def observe(self, old: CachedExperiment | None, new: CachedExperiment) -> None:
        experiment = new.experiment
        if self.metrics is not None:
            self.metrics.set_committed(experiment.name, bool(experiment.commit.arm))
        status = stopping_status(experiment, new.full_stats())
        if status is None:
            self._status.pop(experiment.name, None)
            return
        self._status[experiment.name] = status
        stopping = experiment.stopping
        if (
            status.winner
            and stopping is not None
            and stopping.commit
            and not experiment.commit.arm
            and experiment.name not in self._committing
        ):
            self._committing.add(experiment.name)
            task = asyncio.get_running_loop().create_task(
                self._commit(experiment, status), name=f"commit-{experiment.name}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _commit(self, experiment: Experiment, status: StoppingStatus) -> None:
        summary = status.guarantee(experiment)

        def change(current: Experiment) -> Experiment:
            return current.with_changes(
                commit=Commit(status.winner, time.time(), STOPPING_RULE_AGENT, summary)
            )

        try:
            # Conditional on the version the verdict was computed from: a replica that saw an
            # older state, or lost the race to another replica, changes nothing.
            def audit(after: Experiment) -> list[AuditEntry]:
                arguments = {"arm": status.winner, "version": after.version}
                return [AuditEntry(STOPPING_RULE_AGENT, "commit", arguments, summary)]

            await self.store.update_experiment(
                experiment.name, change, expected_version=experiment.version, audit=audit
            )
            log.info(
                "experiment committed to its winner",
                extra={"experiment": experiment.name, "arm": status.winner},
            )
        except Aborted:
            pass  # another replica committed first, or the experiment changed meanwhile
        except STORE_ERRORS as error:
            log.warning("could not commit %s (%s); will retry", experiment.name, error)
        except Exception:
            log.exception("could not commit %s", experiment.name)
        finally:
            self._committing.discard(experiment.name)
