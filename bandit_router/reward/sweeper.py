"""Credits default rewards to decisions whose deadline passed with no reward.

Every replica runs a sweeper; they need no coordination because the Lua script claims each
pending decision with ZREM, and only the claimant writes: exactly once, however many sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from bandit_router.route.cache import ExperimentCache
from bandit_router.store.errors import STORE_ERRORS
from bandit_router.store.redis_store import Store
from bandit_router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bandit_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

BATCH = 500
MARKER_TTL_MS = 25 * 3600 * 1000


class DefaultRewardSweeper:
    def __init__(
        self,
        store: Store,
        cache: ExperimentCache,
        *,
        interval: float = 1.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.interval = interval
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
        self.credited = 0
        self._stopping = False

    async def sweep_once(self) -> int:
        """Credit every due decision of every experiment; returns how many this replica won."""
        total = 0
        for entry in self.cache.entries():
            experiment = entry.experiment
            if experiment.default_reward is None:
                continue
            ttl = int(experiment.late_reward_grace * 1000) + MARKER_TTL_MS
            while True:
                due = await self.store.due_pending(experiment.name, int(time.time() * 1000), BATCH)
                if not due:
                    break
                arms = await self.store.apply_defaults(experiment, due, ttl, entry.policy.gamma)
                total += len(arms)
                if self.metrics is not None:
                    for arm, count in Counter(arms).items():
                        self.metrics.observe_default_rewards(
                            experiment.name, arm, count, count * experiment.default_reward
                        )
                if len(due) < BATCH:
                    break
        self.credited += total
        if total:
            log.info("credited %d default rewards", total, extra={"default_rewards": total})
        return total

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.interval)
            started = time.perf_counter()
            try:
                await self.sweep_once()
                if self.metrics is not None:
                    self.metrics.observe_store("sweep", time.perf_counter() - started, True)
            except STORE_ERRORS as error:
                if self.metrics is not None:
                    self.metrics.observe_store("sweep", time.perf_counter() - started, False)
                log.warning("default-reward sweep failed: %s; will retry", error)
            except Exception:
                log.exception("default-reward sweep failed unexpectedly")

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="default-reward-sweeper")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait([self._task])
