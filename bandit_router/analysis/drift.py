"""Watches every arm's reward stream for a change of mean, from the shared statistics.

Each replica sees only its share of Reward calls, but every replica reads the same
statistics at every cache refresh; the increments of (n, sum) between refreshes are the whole
reward stream, batched. They feed a Page-Hinkley detector per arm (policies.drift). On an
alarm the statistic is exported and listed in the report, and, if the experiment sets
``drift_discount``, its policy is switched to that discount so stale evidence fades.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bandit_router.model.experiments import Experiment, PolicySpec
from bandit_router.route.cache import CachedExperiment
from bandit_router.store.redis_store import AuditEntry, Store
from policies.drift import DEFAULT_DELTA, DEFAULT_THRESHOLD, DEFAULT_WARMUP, PageHinkley

if TYPE_CHECKING:
    from bandit_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class _Track:
    incarnation: str
    arms: tuple[str, ...]
    n: np.ndarray
    total: np.ndarray
    total_sq: np.ndarray
    detector: PageHinkley
    discounted: bool = False


class DriftMonitor:
    def __init__(
        self,
        store: Store,
        metrics: Metrics | None = None,
        *,
        delta: float = DEFAULT_DELTA,
        threshold: float = DEFAULT_THRESHOLD,
        warmup: int = DEFAULT_WARMUP,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.delta = delta
        self.threshold = threshold
        self.warmup = warmup
        self._tracks: dict[str, _Track] = {}
        self._switching: set[str] = set()

    def status(self, experiment: str) -> dict[str, tuple[float, bool]]:
        """Per arm (statistic, detected) as last computed on this replica."""
        track = self._tracks.get(experiment)
        if track is None:
            return {}
        statistic, detected = track.detector.statistic, track.detector.detected
        return {arm: (float(statistic[i]), bool(detected[i])) for i, arm in enumerate(track.arms)}

    def _detector(self, experiment: Experiment, n_arms: int) -> PageHinkley:
        """Rewards the report models as Bernoulli trials (bounds within [0, 1]) get the
        Bernoulli-corrected test; all others are standardised by their sample variance."""
        low, high = experiment.reward_bounds()
        bounded = 0.0 <= low < high <= 1.0
        return PageHinkley(
            n_arms,
            delta=self.delta,
            threshold=self.threshold,
            warmup=self.warmup,
            bounds=(low, high) if bounded else None,
        )

    def observe(self, old: CachedExperiment | None, new: CachedExperiment) -> None:
        experiment = new.experiment
        n = np.asarray(new.stats.n)
        total = np.asarray(new.stats.total)
        total_sq = np.asarray(new.stats.total_sq)
        track = self._tracks.get(experiment.name)
        if (
            track is None
            or track.incarnation != experiment.incarnation
            or track.arms != experiment.arm_names
        ):
            self._tracks[experiment.name] = _Track(
                experiment.incarnation,
                experiment.arm_names,
                n.copy(),
                total.copy(),
                total_sq.copy(),
                self._detector(experiment, len(n)),
            )
            return
        if new.policy.gamma != 1.0:  # discounted counts are not a raw stream; nothing to test
            track.n, track.total, track.total_sq = n.copy(), total.copy(), total_sq.copy()
            track.discounted = True
            return
        if track.discounted:
            # An operator reverted the discount (UpdateExperiment): test afresh from here.
            track.discounted = False
            track.detector = self._detector(experiment, len(n))
            track.n, track.total, track.total_sq = n.copy(), total.copy(), total_sq.copy()
            return
        delta_n = n - track.n
        delta_sum = total - track.total
        delta_sq = total_sq - track.total_sq
        if (delta_n < 0).any():  # statistics were reset: start over
            track.detector.reset()
            track.n, track.total, track.total_sq = n.copy(), total.copy(), total_sq.copy()
            return
        alarms = track.detector.update(delta_n, delta_sum, delta_sq)
        track.n, track.total, track.total_sq = n.copy(), total.copy(), total_sq.copy()
        if self.metrics is not None:
            statistic, detected = track.detector.statistic, track.detector.detected
            for i, arm in enumerate(track.arms):
                self.metrics.set_drift(experiment.name, arm, float(statistic[i]), bool(detected[i]))
        if alarms.any():
            arms = [track.arms[i] for i in np.flatnonzero(alarms)]
            log.warning("drift detected", extra={"experiment": experiment.name, "arms": arms})
            if experiment.drift_discount is not None and experiment.name not in self._switching:
                self._switching.add(experiment.name)
                asyncio.get_running_loop().create_task(self._switch(experiment, arms))

    async def _switch(self, experiment: Experiment, arms: list[str]) -> None:
        gamma = experiment.drift_discount
        try:

            def change(current: Experiment) -> Experiment:
                params = {**current.policy.params, "gamma": gamma or 1.0}
                return current.with_changes(policy=PolicySpec(current.policy.name, params))

            current = await self.store.get_experiment(experiment.name)
            if current is None or current.policy.params.get("gamma") == gamma:
                return
            before = dict(current.policy.params)

            # The entry carries the policy parameters before the switch, so an operator can
            # revert with UpdateExperiment (policy) and stop further switches by clearing
            # drift_discount; detection resumes once gamma is back at 1.
            def audit(after: Experiment) -> list[AuditEntry]:
                arguments = {
                    "gamma": gamma,
                    "arms": arms,
                    "version": after.version,
                    "previous_policy_params": before,
                }
                why = f"reward mean changed on {', '.join(arms)}; revert with UpdateExperiment"
                return [AuditEntry("drift-detector", "switch_to_discounted", arguments, why)]

            await self.store.update_experiment(experiment.name, change, audit=audit)
        except Exception:
            log.exception("could not switch %s to a discounted policy", experiment.name)
        finally:
            self._switching.discard(experiment.name)
