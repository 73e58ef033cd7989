"""Writes decisions to the store in the background, one script call per experiment and flush.

Route must not wait on Redis, yet every decision needs a pending record (for its default
reward), a decision-log entry (for replay) and a counter (for burn-in and reports). They are
buffered and flushed together a few milliseconds later (at once when 256 are buffered),
because a round trip costs the server about the same whether it carries one decision or a
hundred: a flush's fixed cost is ~160 µs of the server's CPU, each decision in it ~3 µs
(measured in-process, with hiredis packing), so at 3,000 Route/s a 25 ms linger (~75 a
flush) costs 5 µs a decision and 10 ms (~30) costs 8. The cost of this choice: if the
process dies between a decision and its flush (at most the linger, ``--decision-linger-ms``),
that decision gets no default reward and no log entry; its real reward still counts, since
the id is self-contained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bandit_router.route.decision_log import LogRow, encode
from bandit_router.store.errors import STORE_ERRORS
from bandit_router.store.redis_store import ContextualPending, PendingDecision, Store

if TYPE_CHECKING:
    from bandit_router.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BUFFERED = 200_000
FLUSH_AT = 256
LINGER_SECONDS = 0.025


@dataclass
class _Batch:
    incarnation: str
    pending: list[PendingDecision | ContextualPending] = field(default_factory=list)
    rows: list[LogRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class DecisionRecorder:
    def __init__(self, store: Store, *, linger: float = LINGER_SECONDS) -> None:
        self.store = store
        self.linger = linger
        self.metrics: Metrics | None = None
        self._batches: dict[str, _Batch] = {}
        self._buffered = 0
        self._task: asyncio.Task[None] | None = None
        #: Resolved to end the current linger early, once a flush's worth is buffered.
        self._full: asyncio.Future[None] | None = None
        self.dropped = 0

    def record(
        self,
        experiment: str,
        incarnation: str,
        arm: str,
        row: LogRow,
        pending: PendingDecision | ContextualPending | None,
    ) -> None:
        batch = self._batches.get(experiment)
        if batch is None or batch.incarnation != incarnation:
            batch = self._batches[experiment] = _Batch(incarnation)
        if pending is not None:
            batch.pending.append(pending)
        batch.rows.append(row)
        batch.counts[arm] += 1
        self._buffered += 1
        if self._buffered >= FLUSH_AT:
            full = self._full
            if full is not None and not full.done():
                full.set_result(None)
            if self._buffered > MAX_BUFFERED:  # Redis has been away for long: shed the oldest
                self._shed()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    def _shed(self) -> None:
        for batch in self._batches.values():
            if batch.rows:
                batch.rows.pop(0)
                self._buffered -= 1
                self.dropped += 1
                return

    async def _flush_loop(self) -> None:
        backoff = 0.05
        while self._batches:
            # Linger a moment so a flush carries many decisions, unless a flush's worth
            # arrives first (then a busy server writes more often, in bounded batches).
            if self._buffered < FLUSH_AT:
                await self._linger()
            batches, self._batches = self._batches, {}
            count, self._buffered = self._buffered, 0
            started = time.perf_counter()
            try:
                await self.store.record_decisions(
                    {
                        name: (
                            batch.incarnation,
                            batch.pending,
                            encode(batch.rows),
                            dict(batch.counts),
                        )
                        for name, batch in batches.items()
                    }
                )
                backoff = 0.05
                self._observe(started, ok=True)
            except STORE_ERRORS as error:
                self._observe(started, ok=False)
                log.warning("decision flush of %d failed (%s); retrying", count, error)
                for name, batch in batches.items():  # put them back in front of newer ones
                    newer = self._batches.get(name)
                    if newer is not None and newer.incarnation == batch.incarnation:
                        batch.pending += newer.pending
                        batch.rows += newer.rows
                        for arm, n in newer.counts.items():
                            batch.counts[arm] += n
                    self._batches[name] = batch
                self._buffered += count
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _linger(self) -> None:
        loop = asyncio.get_running_loop()
        full = self._full = loop.create_future()
        timer = loop.call_later(self.linger, _resolve, full)
        try:
            await full
        finally:
            timer.cancel()
            self._full = None

    def _observe(self, started: float, *, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.observe_store("record_decisions", time.perf_counter() - started, ok)

    async def flush(self, timeout: float = 5.0) -> int:
        """Wait until buffered decisions are written (graceful shutdown), retrying a slow or
        failing store for up to ``timeout`` seconds; returns how many are still unwritten."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self._buffered


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
