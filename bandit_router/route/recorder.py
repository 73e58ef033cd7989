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

A flush that fails is sent again, unchanged and under its number, until Redis answers; the
decisions made meanwhile wait for the next flush. A failure can hide a flush that was written
(the reply lost to a timeout, or a frozen Redis that runs it on waking), so the script skips
a number it has already written: each decision is counted and logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bandit_router.route.decision_log import LogRow, encode
from bandit_router.store.errors import STORE_ERRORS
from bandit_router.store.redis_store import (
    ContextualPending,
    DecisionFlush,
    PendingDecision,
    Store,
)

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

    def sealed(self, experiment: str, number: int) -> DecisionFlush:
        return DecisionFlush(
            experiment,
            self.incarnation,
            number,
            self.pending,
            encode(self.rows),
            self.counts,
            buffered=len(self.rows),
        )


class DecisionRecorder:
    def __init__(self, store: Store, *, linger: float = LINGER_SECONDS) -> None:
        self.store = store
        self.linger = linger
        self.metrics: Metrics | None = None
        #: This process's name among the store's decision writers (its flush numbers).
        self.writer = secrets.token_hex(8)
        self._numbered = 0
        #: Decisions not yet in a flush, per experiment.
        self._batches: dict[str, _Batch] = {}
        #: Flushes sent whose outcome is unknown: sent again, unchanged, before anything new.
        self._unwritten: list[DecisionFlush] = []
        self._experiments: set[str] = set()
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

    def _seal(self) -> list[DecisionFlush]:
        """The buffered decisions as numbered flushes, one per experiment, except for an
        experiment whose last flush is still unwritten: a higher number written first would
        make the script skip it."""
        waiting = {flush.experiment for flush in self._unwritten}
        flushes = []
        for experiment in [name for name in self._batches if name not in waiting]:
            self._numbered += 1
            flushes.append(self._batches.pop(experiment).sealed(experiment, self._numbered))
        return flushes

    async def _flush_loop(self) -> None:
        backoff = 0.05
        while self._batches or self._unwritten:  # a failed flush first, then the new ones
            # Linger a moment so a flush carries many decisions, unless a flush's worth
            # arrives first (then a busy server writes more often, in bounded batches).
            if not self._unwritten and self._buffered < FLUSH_AT:
                await self._linger()
            flushes = self._unwritten + self._seal()
            started = time.perf_counter()
            try:
                errors = await self.store.record_decisions(self.writer, flushes)
            except STORE_ERRORS as failure:  # any of them may have been written
                errors = [failure] * len(flushes)
            self._unwritten = [f for f, e in zip(flushes, errors, strict=True) if e is not None]
            written = [f for f, e in zip(flushes, errors, strict=True) if e is None]
            self._buffered -= sum(f.buffered for f in written)
            self._experiments.update(f.experiment for f in written)
            self._observe(started, ok=not self._unwritten)
            if self._unwritten:
                failed = sum(f.buffered for f in self._unwritten)
                first = next(e for e in errors if e is not None)
                log.warning("decision flush of %d failed (%s); retrying", failed, first)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            else:
                backoff = 0.05

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
        failing store for up to ``timeout`` seconds; returns how many are still unwritten.
        Once all are written, this writer's flush numbers are removed from the store."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
        if self._buffered == 0 and self._experiments:
            with contextlib.suppress(*STORE_ERRORS):  # they expire by themselves otherwise
                await asyncio.wait_for(
                    self.store.forget_writer(self.writer, sorted(self._experiments)), timeout
                )
        return self._buffered


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
