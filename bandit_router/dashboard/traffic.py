"""Traffic share per arm over the last minutes, from samples of the shared decision counters.

Each replica's cache holds every arm's fleet-wide decision count (the ``decisions`` field of
the statistics hash, refreshed in the background). Sampling those counts every
``interval`` seconds and differencing samples gives the share of decisions per arm over any
recent window at no cost to Route: nothing is counted here, only read from the cache.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from bandit_router.route.cache import CachedExperiment

SAMPLE_INTERVAL = 5.0
HISTORY_SECONDS = 15 * 60.0


@dataclass(frozen=True)
class Sample:
    at: float
    incarnation: str
    counts: Mapping[str, float]


class TrafficHistory:
    """A ring of decision-count samples per experiment (``HISTORY_SECONDS`` long)."""

    def __init__(
        self,
        interval: float = SAMPLE_INTERVAL,
        history: float = HISTORY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._length = max(2, int(history / interval) + 1)
        self._samples: dict[str, deque[Sample]] = {}

    def sample(self, entries: Sequence[CachedExperiment]) -> None:
        """Record the current counts of every cached experiment; forget removed ones."""
        now = self.clock()
        names = set()
        for entry in entries:
            experiment = entry.experiment
            names.add(experiment.name)
            ring = self._samples.setdefault(experiment.name, deque(maxlen=self._length))
            if ring and ring[-1].incarnation != experiment.incarnation:
                ring.clear()  # deleted and created again: the old counts mean nothing now
            counts = dict(zip(experiment.arm_names, entry.decisions, strict=True))
            ring.append(Sample(now, experiment.incarnation, counts))
        for name in set(self._samples) - names:
            del self._samples[name]

    def shares(
        self, name: str, window: float, current: CachedExperiment | None = None
    ) -> dict[str, float]:
        """Each arm's share of the decisions of the last ``window`` seconds (or of the
        history there is), up to ``current`` (the cache entry now) or else the newest sample;
        empty when there is no traffic in it."""
        ring = self._samples.get(name)
        if not ring:
            return {}
        newest = ring[-1].counts
        if current is not None and current.experiment.incarnation == ring[-1].incarnation:
            newest = dict(zip(current.experiment.arm_names, current.decisions, strict=True))
        now = self.clock()
        oldest = next((s for s in ring if s.at >= now - window), ring[-1])
        return _shares(oldest.counts, newest)

    def series(self, name: str) -> list[tuple[float, dict[str, float]]]:
        """(end time, shares) for each sampling interval of the history."""
        ring = list(self._samples.get(name, ()))
        return [
            (later.at, _shares(earlier.counts, later.counts)) for earlier, later in pairwise(ring)
        ]


def _shares(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    # A reset (counts going down) or a new arm counts from zero rather than going negative.
    deltas = {arm: max(0.0, count - before.get(arm, 0.0)) for arm, count in after.items()}
    total = sum(deltas.values())
    if total <= 0:
        return {}
    return {arm: delta / total for arm, delta in deltas.items()}


async def sample_forever(
    history: TrafficHistory, entries: Callable[[], Sequence[CachedExperiment]]
) -> None:
    """Sample ``entries()`` every ``history.interval`` seconds (a server task)."""
    while True:
        history.sample(entries())
        await asyncio.sleep(history.interval)
